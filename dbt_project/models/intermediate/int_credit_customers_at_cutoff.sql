-- Credit-grade input: the customer master as the warehouse knew it at the end of
-- data_through (the last day of the quarter before the graded one). Picks its version
-- from the full history (stg_crm__customer_versions) with an earlier cut-off than
-- stg_crm__customers, because a grade must not change when a credit limit or an order
-- is changed later in the graded quarter; the columns and the filter are those of
-- stg_crm__customers.
{{ config(materialized='view') }}

with latest as (
    {{ credit_versions_at_cutoff(ref('stg_crm__customer_versions'), 'customer_id') }}
),

renamed as (
    select
        {{ crm_customer_columns() }},
        _reconstructed
    from latest
),

final as (
    select
        customer_id,
        customer_type,
        credit_limit,
        created_at,
        created_date,
        -- no version known at the cut-off: the earliest held (macros/credit_versions_at_cutoff.sql)
        _reconstructed as is_reconstructed
    from renamed
    where created_date <= {{ credit_data_through() }}
)

select * from final
