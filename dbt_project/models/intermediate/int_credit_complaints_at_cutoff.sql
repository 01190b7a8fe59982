-- Credit-grade input: complaint tickets opened by the end of data_through, in the version
-- known then (see int_credit_customers_at_cutoff for why raw is read here).
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(source('raw', 'complaints'), 'complaint_id', credit_data_through(), credit_data_end()) }}
),

final as (
    select
        complaint_id,
        customer_id,
        opened_at,
        category,
        severity
    from latest
    where opened_at < {{ credit_data_end() }}
)

select * from final
