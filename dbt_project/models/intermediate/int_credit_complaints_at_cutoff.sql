-- Credit-grade input: complaint tickets opened by the end of data_through, in the version
-- known then (see int_credit_customers_at_cutoff for why the history is read here).
{{ config(materialized='view') }}

with latest as (
    {{ credit_versions_at_cutoff(ref('stg_crm__complaint_versions'), 'complaint_id') }}
),

renamed as (
    select
        {{ crm_complaint_columns(credit_data_end()) }},
        _reconstructed
    from latest
),

final as (
    select
        complaint_id,
        customer_id,
        opened_at,
        category,
        severity,
        -- no version known at the cut-off: the earliest held (macros/credit_versions_at_cutoff.sql)
        _reconstructed as is_reconstructed
    from renamed
    where opened_at < {{ credit_data_end() }}
)

select * from final
