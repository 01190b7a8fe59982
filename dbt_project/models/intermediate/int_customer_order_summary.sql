-- Owns the per-customer purchase summary as of the run date: the frequency / recency /
-- age inputs of RFM and of the CLV fit, historical value, trailing-window value and
-- product breadth. One row per customer in stg_crm__customers; prospects keep nulls
-- for order dates and zeros for counts and money.
{%- set trailing_start = (modules.datetime.date.fromisoformat(var("as_of") | string)
    - modules.datetime.timedelta(days=(var("trailing_days") | int) - 1)).isoformat() %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

-- a purchase occasion is an order that was not cancelled (returns still count as a
-- purchase day; they only carry zero net revenue)
purchases as (
    select * from orders where is_purchase
),

purchase_days as (
    select
        customer_id,
        order_date,
        sum(net_revenue) as day_net_revenue
    from purchases
    group by customer_id, order_date
),

day_summary as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as order_days,
        sum(day_net_revenue) as all_days_net_revenue
    from purchase_days
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

order_summary as (
    select
        customer_id,
        count(*) as orders_to_date,
        sum(net_revenue) as total_net_revenue,
        sum(gross_margin) as total_gross_margin,
        sum(case when order_date >= cast('{{ trailing_start }}' as date) then net_revenue else 0 end)
            as trailing_net_revenue,
        sum(case when order_date >= cast('{{ trailing_start }}' as date) then gross_margin else 0 end)
            as trailing_gross_margin,
        sum(case when order_date >= cast('{{ trailing_start }}' as date) then 1 else 0 end)
            as trailing_orders
    from purchases
    group by customer_id
),

final as (
    select
        customers.customer_id,
        {{ as_of_date() }} as as_of,
        days.first_order_date,
        days.last_order_date,
        cast(coalesce(days.order_days, 0) as integer) as order_days,
        cast(days.order_days - 1 as integer) as frequency,
        cast({{ dbt.datediff('days.last_order_date', as_of_date(), 'day') }} as integer) as recency_days,
        cast({{ dbt.datediff('days.first_order_date', 'days.last_order_date', 'day') }} as integer)
            as repeat_span_days,
        cast({{ dbt.datediff('days.first_order_date', as_of_date(), 'day') }} as integer) as age_days,
        cast(case when days.order_days > 1
            then {{ value_money_ratio('days.all_days_net_revenue - first_day.first_day_net_revenue',
                                      'days.order_days - 1') }}
        end as numeric(18, 2)) as avg_repeat_spend,
        cast(coalesce(summary.orders_to_date, 0) as integer) as orders_to_date,
        cast(coalesce(summary.total_net_revenue, 0) as numeric(18, 2)) as total_net_revenue,
        cast(coalesce(summary.total_gross_margin, 0) as numeric(18, 2)) as total_gross_margin,
        cast(coalesce(summary.trailing_net_revenue, 0) as numeric(18, 2)) as trailing_net_revenue,
        cast(coalesce(summary.trailing_gross_margin, 0) as numeric(18, 2)) as trailing_gross_margin,
        cast(coalesce(summary.trailing_orders, 0) as integer) as trailing_orders,
        cast(coalesce(categories.product_categories, 0) as integer) as product_categories,
        cast({{ dbt.datediff('customers.created_date', as_of_date(), 'day') }} as integer) as tenure_days
    from customers
    left join day_summary as days on customers.customer_id = days.customer_id
    left join first_day on customers.customer_id = first_day.customer_id
    left join order_summary as summary on customers.customer_id = summary.customer_id
    left join categories on customers.customer_id = categories.customer_id
)

select * from final
