-- Owns the per-customer purchase summary as of the run date: the frequency / recency /
-- age inputs of RFM and of the CLV fit, historical value, trailing-window value and
-- product breadth. One row per customer in stg_crm__customers; prospects keep nulls
-- for order dates and zeros for counts and money.

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

totals as (
    select * from {{ ref('int_customer_order_totals') }}
),

-- the trailing window moves with the run date: its totals are kept per customer too
trailing_window as (
    select customer_id, trailing_net_revenue, trailing_gross_margin, trailing_orders
    from {{ ref('int_customer_window_totals') }}
),

final as (
    select
        customers.customer_id,
        {{ as_of_date() }} as as_of,
        totals.first_order_date,
        totals.last_order_date,
        cast(coalesce(totals.order_days, 0) as integer) as order_days,
        cast(totals.order_days - 1 as integer) as frequency,
        cast({{ dbt.datediff('totals.last_order_date', as_of_date(), 'day') }} as integer) as recency_days,
        cast({{ dbt.datediff('totals.first_order_date', 'totals.last_order_date', 'day') }} as integer)
            as repeat_span_days,
        cast({{ dbt.datediff('totals.first_order_date', as_of_date(), 'day') }} as integer) as age_days,
        cast(case when totals.order_days > 1
            then {{ value_money_ratio('totals.repeat_days_net_revenue', 'totals.order_days - 1') }}
        end as numeric(18, 2)) as avg_repeat_spend,
        cast(coalesce(totals.orders_to_date, 0) as integer) as orders_to_date,
        cast(coalesce(totals.total_net_revenue, 0) as numeric(18, 2)) as total_net_revenue,
        cast(coalesce(totals.total_gross_margin, 0) as numeric(18, 2)) as total_gross_margin,
        cast(coalesce(trailing_window.trailing_net_revenue, 0) as numeric(18, 2)) as trailing_net_revenue,
        cast(coalesce(trailing_window.trailing_gross_margin, 0) as numeric(18, 2)) as trailing_gross_margin,
        cast(coalesce(trailing_window.trailing_orders, 0) as integer) as trailing_orders,
        cast(coalesce(totals.product_categories, 0) as integer) as product_categories,
        cast({{ dbt.datediff('customers.created_date', as_of_date(), 'day') }} as integer) as tenure_days
    from customers
    left join totals on customers.customer_id = totals.customer_id
    left join trailing_window on customers.customer_id = trailing_window.customer_id
)

select * from final
