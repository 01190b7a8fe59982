-- Credit-grade input: complaint tickets opened by the end of data_through, in the version
-- known then (see int_credit_customers_at_cutoff for why the history is read here).
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(ref('stg_crm__complaint_versions'), 'complaint_id', credit_data_through(), credit_data_end()) }}
),

renamed as (
    select
        {{ crm_complaint_columns(credit_data_end()) }}
    from latest
),

final as (
    select
        complaint_id,
        customer_id,
        opened_at,
        category,
        severity
    from renamed
    where opened_at < {{ credit_data_end() }}
)

select * from final
