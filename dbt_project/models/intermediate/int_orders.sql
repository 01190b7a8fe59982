-- One row per order known as of the run date, with the amounts the marts share:
-- net revenue (returns and cancellations count zero), gross margin, and payment timing.
with orders as (
    select * from {{ ref('stg_crm__orders') }}
),

final as (
    select
        order_id,
        customer_id,
        order_date,
        status,
        product_category,
        status in ('placed', 'shipped', 'returned') as is_purchase,
        gross_amount,
        cost_amount,
        case when status in ('placed', 'shipped') then gross_amount else 0 end as net_revenue,
        case when status in ('placed', 'shipped') then gross_amount - cost_amount else 0 end as gross_margin,
        paid_amount,
        written_off_amount,
        invoice_due_date,
        paid_at,
        case
            when status in ('placed', 'shipped') and paid_at is not null
                then {{ dbt.datediff('invoice_due_date', 'cast(paid_at as date)', 'day') }}
        end as days_paid_after_due
    from orders
)

select * from final
