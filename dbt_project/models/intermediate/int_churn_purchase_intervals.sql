-- Owns each customer's purchase rhythm as of the run date: distinct purchase days (a day
-- with at least one non-cancelled order), first and last purchase day, and the median
-- number of days between consecutive purchase days (repeat buyers only; null for a
-- one-time buyer). One row per customer with at least one purchase.
{#- A view of the kept per-customer totals, which compute the rhythm with the other
    date-independent totals and only for the customers whose orders changed, instead of
    ranking every purchase day of every customer each night. -#}
{{ config(materialized='view') }}

with order_totals as (
    select * from {{ ref('int_customer_order_totals') }}
),

final as (
    select
        customer_id,
        first_order_date,
        last_order_date,
        order_days as purchase_days,
        median_interval_days
    from order_totals
)

select * from final
