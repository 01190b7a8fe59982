-- Owns the per-customer purchase totals that do not depend on the run date: first and
-- last purchase day, purchase days, the median number of days between consecutive
-- purchase days (null for a one-time buyer), spend on repeat days, orders, net revenue
-- and margin to date, product breadth. One row per customer with a purchase (an order that was not
-- cancelled; a return is a purchase day with zero net revenue).
{#- Kept between runs (macros/kept/): a run recomputes only the customers of the orders
    int_orders recomputes; a backfill, a change to this model or anything upstream of
    it, or --full-refresh recomputes every customer. -#}
{{ config(**kept_rows_config('customers')) }}

with purchases as (
    select * from {{ ref('int_orders') }}
    where is_purchase
      and {{ kept_rows_changed() }}
),

purchase_days as (
    select
        customer_id,
        order_date,
        sum(net_revenue) as day_net_revenue
    from purchases
    group by customer_id, order_date
),

-- each purchase day with the days since the customer's previous one (null on the first)
day_intervals as (
    select
        customer_id,
        order_date,
        day_net_revenue,
        {{ crm_days_between(
            'lag(order_date) over (partition by customer_id order by order_date)', 'order_date'
        ) }} as interval_days
    from purchase_days
),

day_summary as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as order_days,
        sum(day_net_revenue) as all_days_net_revenue,
        {{ crm_median('cast(interval_days as decimal(18, 4))') }} as median_interval_days
    from day_intervals
    group by customer_id
),

-- spend on repeat purchase days = all purchase days but the first (a join on the first
-- day costs less than numbering every customer's days)
first_day as (
    select
        purchase_days.customer_id,
        purchase_days.day_net_revenue as first_day_net_revenue
    from purchase_days
    inner join day_summary
        on purchase_days.customer_id = day_summary.customer_id
        and purchase_days.order_date = day_summary.first_order_date
),

categories as (
    select customer_id, count(*) as product_categories
    from (
        select distinct customer_id, product_category
        from purchases
        where product_category is not null
    ) as customer_categories
    group by customer_id
),

order_totals as (
    select
        customer_id,
        count(*) as orders_to_date,
        sum(net_revenue) as total_net_revenue,
        sum(gross_margin) as total_gross_margin
    from purchases
    group by customer_id
),

final as (
    select
        days.customer_id,
        days.first_order_date,
        days.last_order_date,
        cast(days.order_days as integer) as order_days,
        cast(days.median_interval_days as decimal(18, 2)) as median_interval_days,
        cast(days.all_days_net_revenue - first_day.first_day_net_revenue as numeric(18, 2))
            as repeat_days_net_revenue,
        cast(totals.orders_to_date as integer) as orders_to_date,
        cast(totals.total_net_revenue as numeric(18, 2)) as total_net_revenue,
        cast(totals.total_gross_margin as numeric(18, 2)) as total_gross_margin,
        cast(coalesce(categories.product_categories, 0) as integer) as product_categories
    from day_summary as days
    inner join first_day on days.customer_id = first_day.customer_id
    inner join order_totals as totals on days.customer_id = totals.customer_id
    left join categories on days.customer_id = categories.customer_id
)

{{ kept_rows_select('final') }}
