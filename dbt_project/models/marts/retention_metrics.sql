-- Customer and revenue retention per calendar month and quarter (004 balanced
-- scorecard; 002 the cost of losing a customer), from the month / quarter of the first
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
{%- set active_days = var('retention_active_days') | int %}
{%- if active_days < 92 %}
{{ exceptions.raise_compiler_error("var retention_active_days is " ~ active_days ~ ": retention_metrics needs at least 92 days (the longest quarter), so that a purchase in a period or in the one before it keeps its customer active through the period's start") }}
{%- endif %}

{#- How it is computed, in time linear in the purchase days (no join of periods with
    customers or with purchase days, which grew with periods x history: 227M rows at 1M
    customers). A customer is active on day x when a purchase day falls in
    [x - A + 1, x]; each customer's purchase days merge into disjoint "activity spells"
    [first day, last day + A - 1] (a new spell starts after a gap of more than A days), so
    counting the spells that cover a day counts the customers active on it. Because A is
    at least as long as any period (checked above):
    - customers_at_start / _at_end: spells covering a day, from the running count of
      spell starts (+1) and ends (-1) per day;
    - a start customer who is not active at measured_through had their covering spell end
      inside the period (the day after its end, the "churn day", falls in it by
      measured_through) and no new spell by measured_through: each spell is matched to one
      period per type, the one holding its churn day; their revenue in the A days before
      period_start all lies in that spell;
    - every purchase in the prior window [prior_period_start, prior_measured_through]
      keeps its customer active at period_start - 1, so start_customers_prior_revenue is
      all revenue in that window;
    - a purchase day inside its period counts for start_customers_revenue when its spell
      began before period_start or the customer's spell before covered period_start - 1;
    - a customer is new in the period holding the start of their first spell.
    Purchase days after measured_through never occur: int_orders stops at the run date. #}

with periods as (
    select
        *,
        {{ crm_add_days('period_start', -1) }} as day_before_start,
        {{ crm_add_days('period_start', -active_days) }} as trailing_start
    from {{ ref('int_churn_retention_periods') }}
),

purchase_days as (
    select customer_id, order_date, sum(net_revenue) as net_revenue
    from {{ ref('int_orders') }}
    where is_purchase
    group by customer_id, order_date
),

spell_starts as (
    select
        customer_id,
        order_date,
        net_revenue,
        case
            when lag(order_date) over (partition by customer_id order by order_date) is null then 1
            when {{ crm_days_between('lag(order_date) over (partition by customer_id order by order_date)', 'order_date') }}
                > {{ active_days }} then 1
            else 0
        end as is_spell_start
    from purchase_days
),

-- every purchase day with the number of its spell (1 = the customer's first)
numbered as (
    select
        customer_id,
        order_date,
        net_revenue,
        sum(is_spell_start) over (partition by customer_id order by order_date rows unbounded preceding) as spell_no
    from spell_starts
),

spell_bounds as (
    select
        customer_id,
        spell_no,
        min(order_date) as spell_start,
        {{ crm_add_days('max(order_date)', active_days - 1) }} as spell_end
    from numbered
    group by customer_id, spell_no
),

spells as (
    select
        customer_id,
        spell_no,
        spell_start,
        spell_end,
        {{ crm_add_days('spell_end', 1) }} as churn_day,
        lag(spell_start) over (partition by customer_id order by spell_no) as prior_spell_start,
        lag(spell_end) over (partition by customer_id order by spell_no) as prior_spell_end,
        lead(spell_start) over (partition by customer_id order by spell_no) as next_spell_start
    from spell_bounds
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

-- each spell against the period (per type) that holds its churn day
spell_periods as (
    {%- for period_type in ['month', 'quarter'] %}
    select
        spells.customer_id,
        spells.spell_no,
        periods.period_type,
        periods.period_start,
        periods.trailing_start,
        periods.day_before_start
    from spells
    inner join periods
        on periods.period_type = '{{ period_type }}'
        and periods.period_start = {{ crm_month_start('spells.churn_day') if period_type == 'month' else crm_quarter_start('spells.churn_day') }}
    where spells.churn_day <= periods.measured_through
      and spells.spell_start <= periods.day_before_start
      and (spells.next_spell_start is null or spells.next_spell_start > periods.measured_through)
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

churned as (
    select period_type, period_start, count(*) as churned_customers
    from spell_periods
    group by period_type, period_start
),

lost_revenue as (
    select
        spell_periods.period_type,
        spell_periods.period_start,
        sum(numbered.net_revenue) as revenue_lost_churned
    from spell_periods
    inner join numbered
        on numbered.customer_id = spell_periods.customer_id
        and numbered.spell_no = spell_periods.spell_no
    where numbered.order_date >= spell_periods.trailing_start
      and numbered.order_date <= spell_periods.day_before_start
    group by spell_periods.period_type, spell_periods.period_start
),

-- purchase days with their spell's bounds, and the start of their month and quarter
days_in_spells as (
    select
        numbered.order_date,
        numbered.net_revenue,
        spells.spell_no,
        spells.spell_start,
        spells.prior_spell_start,
        spells.prior_spell_end,
        {{ crm_month_start('numbered.order_date') }} as month_start,
        {{ crm_quarter_start('numbered.order_date') }} as quarter_start
    from numbered
    inner join spells
        on numbered.customer_id = spells.customer_id
        and numbered.spell_no = spells.spell_no
),

start_revenue as (
    {%- for period_type in ['month', 'quarter'] %}
    select
        cast('{{ period_type }}' as varchar(8)) as period_type,
        {{ period_type }}_start as period_start,
        sum(case
            when spell_start < {{ period_type }}_start
              or (prior_spell_start < {{ period_type }}_start
                  and prior_spell_end >= {{ crm_add_days(period_type ~ '_start', -1) }})
                then net_revenue else 0
        end) as start_customers_revenue
    from days_in_spells
    group by {{ period_type }}_start
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

new_customers as (
    {%- for period_type in ['month', 'quarter'] %}
    select
        cast('{{ period_type }}' as varchar(8)) as period_type,
        {{ crm_month_start('spell_start') if period_type == 'month' else crm_quarter_start('spell_start') }} as period_start,
        count(*) as new_customers
    from spells
    where spell_no = 1
    group by {{ crm_month_start('spell_start') if period_type == 'month' else crm_quarter_start('spell_start') }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

revenue_by_day as (
    select order_date, sum(net_revenue) as net_revenue
    from purchase_days
    group by order_date
),

prior_revenue as (
    select
        periods.period_type,
        periods.period_start,
        sum(revenue_by_day.net_revenue) as start_customers_prior_revenue
    from periods
    inner join revenue_by_day
        on revenue_by_day.order_date >= periods.prior_period_start
        and revenue_by_day.order_date <= periods.prior_measured_through
    group by periods.period_type, periods.period_start
),

period_totals as (
    select
        periods.period_type,
        periods.period_start,
        coalesce(active_counts.customers_at_start, 0) as customers_at_start,
        coalesce(active_counts.customers_at_end, 0) as customers_at_end,
        coalesce(active_counts.customers_at_start, 0) - coalesce(churned.churned_customers, 0) as retained_customers,
        coalesce(churned.churned_customers, 0) as churned_customers,
        coalesce(start_revenue.start_customers_revenue, 0) as start_customers_revenue,
        coalesce(prior_revenue.start_customers_prior_revenue, 0) as start_customers_prior_revenue,
        coalesce(lost_revenue.revenue_lost_churned, 0) as revenue_lost_churned
    from periods
    left join active_counts
        on periods.period_type = active_counts.period_type and periods.period_start = active_counts.period_start
    left join churned
        on periods.period_type = churned.period_type and periods.period_start = churned.period_start
    left join start_revenue
        on periods.period_type = start_revenue.period_type and periods.period_start = start_revenue.period_start
    left join prior_revenue
        on periods.period_type = prior_revenue.period_type and periods.period_start = prior_revenue.period_start
    left join lost_revenue
        on periods.period_type = lost_revenue.period_type and periods.period_start = lost_revenue.period_start
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
        cast(coalesce(totals.revenue_lost_churned, 0) as decimal(18, 2)) as revenue_lost_churned
    from periods
    left join period_totals as totals
        on periods.period_type = totals.period_type
        and periods.period_start = totals.period_start
    left join new_customers
        on periods.period_type = new_customers.period_type
        and periods.period_start = new_customers.period_start
)

select * from final
