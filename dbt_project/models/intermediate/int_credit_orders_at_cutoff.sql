-- Credit-grade input: orders with their invoice and payment state as known at the end of
-- data_through (see int_credit_customers_at_cutoff for why the history is read here).
-- Amounts in the reporting currency, as in int_orders; an order dated after
-- data_through, or a payment, return or write-off recorded after it, is not seen.
{{ config(materialized='view') }}

with latest as (
    {{ credit_versions_at_cutoff(ref('stg_crm__orders'), 'order_id') }}
),

fx as (
    select * from {{ ref('fx_rates') }}
),

renamed as (
    select
        {{ crm_order_columns() }},
        _reconstructed
    from latest
),

final as (
    select
        renamed.order_id,
        renamed.customer_id,
        renamed.order_date,
        renamed.status,
        {{ is_purchase('renamed.status') }} as is_purchase,
        {{ is_invoiced('renamed.status') }} as is_invoiced,
        {{ order_amounts_in_reporting_currency('renamed', 'fx') }},
        renamed.product_category,
        renamed.invoice_due_date,
        renamed.paid_at,
        -- no version known at the cut-off: the earliest held (macros/credit_versions_at_cutoff.sql)
        renamed._reconstructed as is_reconstructed
    from renamed
    inner join fx on renamed.currency = fx.currency
    where renamed.order_date <= {{ credit_data_through() }}
)

select * from final
