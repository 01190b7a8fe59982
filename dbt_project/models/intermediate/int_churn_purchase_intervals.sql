-- Owns each customer's purchase rhythm as of the run date: distinct purchase days (a day
-- with at least one non-cancelled order), first and last purchase day, and the median
-- number of days between consecutive purchase days (repeat buyers only; null for a
-- one-time buyer). One row per customer with at least one purchase.
with purchases as (
    select * from {{ ref('int_orders') }}
    where is_purchase
),

purchase_days as (
    select distinct customer_id, order_date
    from purchases
),

intervals as (
    select
        customer_id,
        order_date,
        {{ crm_days_between(
            'lag(order_date) over (partition by customer_id order by order_date)', 'order_date'
        ) }} as interval_days
    from purchase_days
),

final as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        cast(count(*) as integer) as purchase_days,
        cast({{ crm_median('cast(interval_days as decimal(18, 4))') }} as decimal(18, 2)) as median_interval_days
    from intervals
    group by customer_id
)

select * from final
