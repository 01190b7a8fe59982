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
{#- The period × order join is an equi-join on the order's calendar month, then the exact
    date conditions: each period lists the calendar months its window spans (at most
    max(active_days, one quarter) + one quarter), so the work grows with the orders, not
    with orders × periods as the inequality join it replaces did. -#}
{%- set max_months = (([active_days, 92] | max) + 92) // 28 + 2 %}
with periods as (
    select
        *,
        least(prior_period_start, {{ crm_add_days('period_start', -active_days) }}) as window_start
    from {{ ref('int_churn_retention_periods') }}
),

orders as (
    select
        *,
        cast(extract(year from order_date) as integer) * 12 + cast(extract(month from order_date) as integer)
            as order_month
    from {{ ref('int_orders') }}
    where is_purchase
),

first_orders as (
    select customer_id, min(order_date) as first_order_date
    from orders
    group by customer_id
),

month_offsets as (
    {%- for n in range(max_months) %}
    select {{ n }} as n{{ ' union all' if not loop.last }}
    {%- endfor %}
),

period_months as (
    select
        periods.*,
        cast(extract(year from periods.window_start) as integer) * 12
            + cast(extract(month from periods.window_start) as integer) + month_offsets.n as order_month
    from periods
    cross join month_offsets
    where cast(extract(year from periods.window_start) as integer) * 12
            + cast(extract(month from periods.window_start) as integer) + month_offsets.n
        <= cast(extract(year from periods.measured_through) as integer) * 12
            + cast(extract(month from periods.measured_through) as integer)
),

customer_periods as (
    select
        periods.period_type,
        periods.period_start,
        orders.customer_id,
        max(case
            when orders.order_date >= {{ crm_add_days('periods.period_start', -active_days) }}
             and orders.order_date < periods.period_start then 1 else 0
        end) as active_at_start,
        max(case
            when orders.order_date > {{ crm_add_days('periods.measured_through', -active_days) }}
             and orders.order_date <= periods.measured_through then 1 else 0
        end) as active_at_end,
        sum(case
            when orders.order_date >= periods.period_start and orders.order_date <= periods.measured_through
                then orders.net_revenue else 0
        end) as period_revenue,
        sum(case
            when orders.order_date >= periods.prior_period_start and orders.order_date <= periods.prior_measured_through
                then orders.net_revenue else 0
        end) as prior_period_revenue,
        sum(case
            when orders.order_date >= {{ crm_add_days('periods.period_start', -active_days) }}
             and orders.order_date < periods.period_start then orders.net_revenue else 0
        end) as trailing_revenue_at_start
    from period_months as periods
    inner join orders
        on orders.order_month = periods.order_month
        and orders.order_date <= periods.measured_through
        and orders.order_date >= periods.window_start
    group by periods.period_type, periods.period_start, orders.customer_id
),

period_totals as (
    select
        period_type,
        period_start,
        sum(active_at_start) as customers_at_start,
        sum(active_at_end) as customers_at_end,
        sum(case when active_at_start = 1 and active_at_end = 1 then 1 else 0 end) as retained_customers,
        sum(case when active_at_start = 1 and active_at_end = 0 then 1 else 0 end) as churned_customers,
        sum(case when active_at_start = 1 then period_revenue else 0 end) as start_customers_revenue,
        sum(case when active_at_start = 1 then prior_period_revenue else 0 end) as start_customers_prior_revenue,
        sum(case when active_at_start = 1 and active_at_end = 0 then trailing_revenue_at_start else 0 end)
            as revenue_lost_churned
    from customer_periods
    group by period_type, period_start
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
