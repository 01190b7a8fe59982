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

{# How it is computed, without a periods × orders join (which grew with orders × periods
    and ran out of memory at 1M customers): a customer is active on day x when a purchase
    day falls in [x - A + 1, x], so each customer's purchase days merge into disjoint
    "activity spells" [first day, last day + A - 1] (a new spell starts after a gap of
    more than A days). Active at start = a spell covers period_start - 1; active at end =
    a spell covers measured_through; no customer has two spells covering one day, so
    counting spells counts customers. The revenue sums join the purchase days of the
    customers active at start, and aggregate per period only. #}

with periods as (
    select
        *,
        {{ crm_add_days('period_start', -1) }} as day_before_start,
        {{ crm_add_days('period_start', -active_days) }} as trailing_start
    from {{ ref('int_churn_retention_periods') }}
),

orders as (
    select * from {{ ref('int_orders') }}
    where is_purchase
),

first_orders as (
    select customer_id, min(order_date) as first_order_date
    from orders
    group by customer_id
),

purchase_days as (
    select customer_id, order_date, sum(net_revenue) as net_revenue
    from orders
    group by customer_id, order_date
),

spell_starts as (
    select
        customer_id,
        order_date,
        case
            when lag(order_date) over (partition by customer_id order by order_date) is null then 1
            when {{ crm_days_between('lag(order_date) over (partition by customer_id order by order_date)', 'order_date') }}
                > {{ active_days }} then 1
            else 0
        end as is_spell_start
    from purchase_days
),

numbered as (
    select
        customer_id,
        order_date,
        sum(is_spell_start) over (partition by customer_id order by order_date rows unbounded preceding) as spell_no
    from spell_starts
),

spells as (
    select
        customer_id,
        min(order_date) as spell_start,
        {{ crm_add_days('max(order_date)', active_days - 1) }} as spell_end
    from numbered
    group by customer_id, spell_no
),

active_at_start as (
    select periods.period_type, periods.period_start, spells.customer_id
    from periods
    inner join spells
        on spells.spell_start <= periods.day_before_start
        and spells.spell_end >= periods.day_before_start
),

active_at_end as (
    select periods.period_type, periods.period_start, spells.customer_id
    from periods
    inner join spells
        on spells.spell_start <= periods.measured_through
        and spells.spell_end >= periods.measured_through
),

start_customers as (
    select
        s.period_type,
        s.period_start,
        s.customer_id,
        e.customer_id is not null as is_retained
    from active_at_start as s
    left join active_at_end as e
        on s.period_type = e.period_type
        and s.period_start = e.period_start
        and s.customer_id = e.customer_id
),

customer_counts as (
    select
        period_type,
        period_start,
        count(*) as customers_at_start,
        sum(case when is_retained then 1 else 0 end) as retained_customers,
        sum(case when is_retained then 0 else 1 end) as churned_customers
    from start_customers
    group by period_type, period_start
),

end_counts as (
    select period_type, period_start, count(*) as customers_at_end
    from active_at_end
    group by period_type, period_start
),

start_revenue as (
    select
        periods.period_type,
        periods.period_start,
        sum(case
            when purchase_days.order_date >= periods.period_start
             and purchase_days.order_date <= periods.measured_through then purchase_days.net_revenue else 0
        end) as start_customers_revenue,
        sum(case
            when purchase_days.order_date >= periods.prior_period_start
             and purchase_days.order_date <= periods.prior_measured_through then purchase_days.net_revenue else 0
        end) as start_customers_prior_revenue,
        sum(case
            when not start_customers.is_retained
             and purchase_days.order_date >= periods.trailing_start
             and purchase_days.order_date <= periods.day_before_start then purchase_days.net_revenue else 0
        end) as revenue_lost_churned
    from start_customers
    inner join periods
        on start_customers.period_type = periods.period_type
        and start_customers.period_start = periods.period_start
    inner join purchase_days
        on purchase_days.customer_id = start_customers.customer_id
        and purchase_days.order_date >= least(periods.prior_period_start, periods.trailing_start)
        and purchase_days.order_date <= periods.measured_through
    group by periods.period_type, periods.period_start
),

period_totals as (
    select
        periods.period_type,
        periods.period_start,
        customer_counts.customers_at_start,
        end_counts.customers_at_end,
        customer_counts.retained_customers,
        customer_counts.churned_customers,
        start_revenue.start_customers_revenue,
        start_revenue.start_customers_prior_revenue,
        start_revenue.revenue_lost_churned
    from periods
    left join customer_counts
        on periods.period_type = customer_counts.period_type and periods.period_start = customer_counts.period_start
    left join end_counts
        on periods.period_type = end_counts.period_type and periods.period_start = end_counts.period_start
    left join start_revenue
        on periods.period_type = start_revenue.period_type and periods.period_start = start_revenue.period_start
),

new_customers as (
    select
        periods.period_type,
        periods.period_start,
        count(*) as new_customers
    from periods
    inner join first_orders
        on first_orders.first_order_date >= periods.period_start
        and first_orders.first_order_date <= periods.measured_through
    group by periods.period_type, periods.period_start
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
