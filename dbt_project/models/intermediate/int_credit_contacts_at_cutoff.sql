-- Credit-grade input: contacts on file at the end of data_through (see
-- int_credit_customers_at_cutoff for why raw is read here). Personal fields are reduced
-- to presence flags here, so nothing downstream can carry them.
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(source('raw', 'contacts'), 'contact_id', credit_data_through(), credit_data_end()) }}
),

final as (
    select
        contact_id,
        customer_id,
        lower(role) as role,
        coalesce(trim(email), '') <> '' as has_email,
        coalesce(trim(phone), '') <> '' as has_phone
    from latest
)

select * from final
