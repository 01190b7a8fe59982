-- One row per customer created by the run date: its latest version known then, unless
-- deleted, renamed and typed.
with latest as (
    {{ latest_as_of(ref('stg_crm__customer_versions'), 'customer_id') }}
),

renamed as (
    select
        {{ crm_customer_columns() }}
    from latest
),

final as (
    select * from renamed
    where created_date <= {{ as_of_date() }}
)

select * from final
