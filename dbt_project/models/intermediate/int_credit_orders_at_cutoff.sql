-- Credit-grade input: orders with their invoice and payment state as known at the end of
-- data_through (see int_credit_customers_at_cutoff for why raw is read here). Amounts in
-- the reporting currency, as in stg_crm__orders; an order dated after data_through, or a
-- payment, return or write-off recorded after it, is not seen.
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(source('raw', 'orders'), 'order_id', credit_data_through(), credit_data_end()) }}
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
        latest.status in ('placed', 'shipped', 'returned') as is_purchase,
        latest.status in ('placed', 'shipped') as is_invoiced,
        {{ order_amounts_in_reporting_currency('latest', 'fx') }},
        latest.product_category,
        latest.invoice_due_date,
        latest.paid_at
    from latest
    inner join fx on latest.currency = fx.currency
    where latest.order_date <= {{ credit_data_through() }}
)

select * from final
