with latest as (
    {{ latest_as_of(source('raw', 'orders'), 'order_id') }}
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
        cast(latest.gross_amount * fx.rate_to_reporting as decimal(18, 2)) as gross_amount,
        cast(latest.cost_amount * fx.rate_to_reporting as decimal(18, 2)) as cost_amount,
        cast(coalesce(latest.paid_amount, 0) * fx.rate_to_reporting as decimal(18, 2)) as paid_amount,
        cast(coalesce(latest.written_off_amount, 0) * fx.rate_to_reporting as decimal(18, 2)) as written_off_amount,
        latest.product_category,
        latest.invoice_due_date,
        latest.paid_at,
        latest.updated_at
    from latest
    inner join fx on latest.currency = fx.currency
    where latest.order_date <= {{ as_of_date() }}
)

select * from final
