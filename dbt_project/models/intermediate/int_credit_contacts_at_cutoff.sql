-- Credit-grade input: contacts on file at the end of data_through (see
-- int_credit_customers_at_cutoff for why the history is read here). Personal fields are
-- reduced to presence flags here, so nothing downstream can carry them.
{{ config(materialized='view') }}

with latest as (
    {{ credit_versions_at_cutoff(ref('stg_crm__contact_versions'), 'contact_id') }}
),

renamed as (
    select
        {{ crm_contact_columns() }},
        _reconstructed
    from latest
),

final as (
    select
        contact_id,
        customer_id,
        role,
        coalesce(trim(email), '') <> '' as has_email,
        coalesce(trim(phone), '') <> '' as has_phone,
        -- no version known at the cut-off: the earliest held (macros/credit_versions_at_cutoff.sql)
        _reconstructed as is_reconstructed
    from renamed
)

select * from final
