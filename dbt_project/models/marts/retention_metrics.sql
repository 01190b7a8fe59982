-- Customer and revenue retention per calendar month and quarter (what keeping customers
-- is worth, and what losing them costs), from the month / quarter of the first
-- purchase up to the one holding the run date. Definitions (A = var
-- retention_active_days, default 365):
--   active on day d      = at least one purchase (non-cancelled order) in the A days up to d
--   customers_at_start   = active on the day before period_start (bought in
--                          [period_start - A, period_start - 1])
--   retained_customers   = of those, still active on measured_through (the period's last
--                          day, or the run date for the current period)
--   churned_customers    = customers_at_start - retained_customers (no purchase for A days
--                          by measured_through)
--   new_customers        = first purchase ever within the period
--   retention / churn / acquisition rate = retained / churned / new over customers_at_start
--   revenue_retention    = net revenue in the period (up to measured_through) from
--                          customers_at_start divided by their net revenue in the
--                          equivalent window of the period just before (the whole prior
--                          period; for the current period the same number of elapsed days)
--   revenue_lost_churned = net revenue of the churned customers in the A days before
--                          period_start (their trailing-12-month revenue that walks away)
--   period_profit        = profit of the period's customers (int_period_customer_profit:
--                          margin minus cost to serve of the period's orders and complaints)
--   profit_per_active_customer = period_profit / customers_at_end
--   profitable_customer_share  = customers with a positive period profit over the customers
--                          with an order or a complaint in the period
{%- set active_days = var('retention_active_days') | int %}
{%- if active_days < 92 %}
{{ exceptions.raise_compiler_error("var retention_active_days is " ~ active_days ~ ": retention_metrics needs at least 92 days (the longest quarter), so that a purchase in a period or in the one before it keeps its customer active through the period's start") }}
{%- endif %}

{#- How it is computed, in time linear in the spells (about one per customer), not in
    the purchase days: int_retention_spells holds each customer's activity spells
    [first day, last day + A - 1], disjoint per customer, so counting the spells that cover
    a day counts the customers active on it. Because A is at least as long as any period
    (checked above):
    - customers_at_start / _at_end: spells covering a day, from the running count of
      spell starts (+1) and ends (-1) per day;
    - a start customer who is not active at measured_through had their covering spell end
      inside the period (its churn day, the day after its end, falls in it by
      measured_through) and no new spell by measured_through: each spell is matched to
      one period per type, the one holding its churn day; their revenue in the A days
      before period_start all lies in that spell (lost_month_revenue /
      lost_quarter_revenue);
    - every purchase in the prior window keeps its customer active at period_start - 1,
      so start_customers_prior_revenue is all revenue in that window;
    - start_customers_revenue is all revenue in the period less that of the spells that
      start in it while the customer's spell before does not cover period_start - 1
      (first_month_revenue / first_quarter_revenue);
    - a customer is new in the period holding the start of their first spell.
    Purchase days after measured_through never occur: int_orders stops at the run date. #}

with periods as (
    select
        *,
        {{ crm_add_days('period_start', -1) }} as day_before_start
    from {{ ref('int_churn_retention_periods') }}
),

spells as (
    select * from {{ ref('int_retention_spells') }}
),

revenue_by_day as (
    select order_date, sum(net_revenue) as net_revenue
    from {{ ref('int_orders') }}
    where is_purchase
    group by order_date
),

-- customers active on a day = spells started by it - spells ended before it
spell_events as (
    select spell_start as event_day, count(*) as delta
    from spells
    group by spell_start
    union all
    select churn_day as event_day, -count(*) as delta
    from spells
    group by churn_day
),

active_counts as (
    select
        periods.period_type,
        periods.period_start,
        sum(case when spell_events.event_day <= periods.day_before_start then spell_events.delta else 0 end)
            as customers_at_start,
        sum(spell_events.delta) as customers_at_end
    from periods
    inner join spell_events
        on spell_events.event_day <= periods.measured_through
    group by periods.period_type, periods.period_start
),

-- the spells that end inside a period (per type) without a new one by measured_through
churned as (
    {%- for period_type in ['month', 'quarter'] %}
    select
        periods.period_type,
        periods.period_start,
        count(*) as churned_customers,
        sum(spells.lost_{{ period_type }}_revenue) as revenue_lost_churned
    from spells
    inner join periods
        on periods.period_type = '{{ period_type }}'
        and periods.period_start = {{ crm_month_start('spells.churn_day') if period_type == 'month' else crm_quarter_start('spells.churn_day') }}
    where spells.churn_day <= periods.measured_through
      and spells.spell_start <= periods.day_before_start
      and (spells.next_spell_start is null or spells.next_spell_start > periods.measured_through)
    group by periods.period_type, periods.period_start
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

-- revenue of the spells that start in a period with no spell covering the day before it
fresh_revenue as (
    {%- for period_type in ['month', 'quarter'] %}
    {%- set start = crm_month_start('spell_start') if period_type == 'month' else crm_quarter_start('spell_start') %}
    select
        cast('{{ period_type }}' as varchar(8)) as period_type,
        {{ start }} as period_start,
        sum(first_{{ period_type }}_revenue) as fresh_revenue
    from spells
    where prior_spell_end is null
       or prior_spell_end < {{ crm_add_days(start, -1) }}
       or prior_spell_start >= {{ start }}
    group by {{ start }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

new_customers as (
    {%- for period_type in ['month', 'quarter'] %}
    {%- set start = crm_month_start('spell_start') if period_type == 'month' else crm_quarter_start('spell_start') %}
    select
        cast('{{ period_type }}' as varchar(8)) as period_type,
        {{ start }} as period_start,
        count(*) as new_customers
    from spells
    where spell_no = 1
    group by {{ start }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

period_revenue as (
    select
        periods.period_type,
        periods.period_start,
        sum(case when revenue_by_day.order_date >= periods.period_start
                  and revenue_by_day.order_date <= periods.measured_through
            then revenue_by_day.net_revenue else 0 end) as period_revenue,
        sum(case when revenue_by_day.order_date >= periods.prior_period_start
                  and revenue_by_day.order_date <= periods.prior_measured_through
            then revenue_by_day.net_revenue else 0 end) as start_customers_prior_revenue
    from periods
    inner join revenue_by_day
        on revenue_by_day.order_date >= periods.prior_period_start
        and revenue_by_day.order_date <= periods.measured_through
    group by periods.period_type, periods.period_start
),

period_profit as (
    select
        period_type,
        period_start,
        sum(profit) as period_profit,
        count(*) as customers_with_activity,
        sum(case when profit > 0 then 1 else 0 end) as profitable_customers
    from {{ ref('int_period_customer_profit') }}
    group by period_type, period_start
),

period_totals as (
    select
        periods.period_type,
        periods.period_start,
        coalesce(active_counts.customers_at_start, 0) as customers_at_start,
        coalesce(active_counts.customers_at_end, 0) as customers_at_end,
        coalesce(active_counts.customers_at_start, 0) - coalesce(churned.churned_customers, 0) as retained_customers,
        coalesce(churned.churned_customers, 0) as churned_customers,
        coalesce(period_revenue.period_revenue, 0) - coalesce(fresh_revenue.fresh_revenue, 0)
            as start_customers_revenue,
        coalesce(period_revenue.start_customers_prior_revenue, 0) as start_customers_prior_revenue,
        coalesce(churned.revenue_lost_churned, 0) as revenue_lost_churned
    from periods
    left join active_counts
        on periods.period_type = active_counts.period_type and periods.period_start = active_counts.period_start
    left join churned
        on periods.period_type = churned.period_type and periods.period_start = churned.period_start
    left join fresh_revenue
        on periods.period_type = fresh_revenue.period_type and periods.period_start = fresh_revenue.period_start
    left join period_revenue
        on periods.period_type = period_revenue.period_type and periods.period_start = period_revenue.period_start
),

final as (
    select
        cast(periods.period_type as varchar(8)) as period_type,
        cast(periods.period_start as date) as period_start,
        cast(periods.period_end as date) as period_end,
        cast(periods.measured_through as date) as measured_through,
        cast(periods.is_complete as boolean) as is_complete,
        cast({{ as_of_date() }} as date) as as_of,
        cast(coalesce(totals.customers_at_start, 0) as integer) as customers_at_start,
        cast(coalesce(totals.retained_customers, 0) as integer) as retained_customers,
        cast(coalesce(totals.churned_customers, 0) as integer) as churned_customers,
        cast(coalesce(new_customers.new_customers, 0) as integer) as new_customers,
        cast(coalesce(totals.customers_at_end, 0) as integer) as customers_at_end,
        cast(case
            when totals.customers_at_start > 0 then 1.0 * totals.retained_customers / totals.customers_at_start
        end as decimal(9, 6)) as retention_rate,
        cast(case
            when totals.customers_at_start > 0 then 1.0 * totals.churned_customers / totals.customers_at_start
        end as decimal(9, 6)) as churn_rate,
        cast(case
            when totals.customers_at_start > 0
                then 1.0 * coalesce(new_customers.new_customers, 0) / totals.customers_at_start
        end as decimal(18, 6)) as acquisition_rate,
        cast(coalesce(totals.start_customers_revenue, 0) as decimal(18, 2)) as start_customers_revenue,
        cast(coalesce(totals.start_customers_prior_revenue, 0) as decimal(18, 2)) as start_customers_prior_revenue,
        cast(case
            when totals.start_customers_prior_revenue > 0
                then totals.start_customers_revenue / totals.start_customers_prior_revenue
        end as decimal(18, 6)) as revenue_retention,
        cast(coalesce(totals.revenue_lost_churned, 0) as decimal(18, 2)) as revenue_lost_churned,
        cast(coalesce(period_profit.period_profit, 0) as decimal(18, 2)) as period_profit,
        cast(case
            when totals.customers_at_end > 0
                then {{ value_money_ratio('coalesce(period_profit.period_profit, 0)', 'totals.customers_at_end') }}
        end as decimal(18, 2)) as profit_per_active_customer,
        cast(coalesce(period_profit.profitable_customers, 0) as integer) as profitable_customers,
        cast(case
            when period_profit.customers_with_activity > 0
                then 1.0 * period_profit.profitable_customers / period_profit.customers_with_activity
        end as decimal(9, 6)) as profitable_customer_share
    from periods
    left join period_totals as totals
        on periods.period_type = totals.period_type
        and periods.period_start = totals.period_start
    left join new_customers
        on periods.period_type = new_customers.period_type
        and periods.period_start = new_customers.period_start
    left join period_profit
        on periods.period_type = period_profit.period_type
        and periods.period_start = period_profit.period_start
)

select * from final
