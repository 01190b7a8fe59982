-- One row per contact: its latest version known on the run date, unless deleted, renamed
-- and typed. Holds personal data (name, email, phone): a view, never published.
with latest as (
    {{ latest_as_of(ref('stg_crm__contact_versions'), 'contact_id') }}
),

renamed as (
    select
        {{ crm_contact_columns() }}
    from latest
),

final as (
    select * from renamed
)

select * from final
