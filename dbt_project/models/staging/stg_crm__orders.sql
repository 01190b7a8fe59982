with latest as (
    select * from {{ ref('stg_crm__orders_latest') }}
),

fx as (
    select * from {{ ref('fx_rates') }}
),

final as (
    select
        latest.order_id,
        latest.customer_id,
        latest.order_date,
        latest.status,
        latest.currency,
        {{ order_amounts_in_reporting_currency('latest', 'fx') }},
        latest.product_category,
        latest.invoice_due_date,
        latest.paid_at,
        latest.updated_at
    from latest
    inner join fx on latest.currency = fx.currency
    where latest.order_date <= {{ as_of_date() }}
)

select * from final
