-- One row per complaint ticket opened by the run date: its latest version known then,
-- unless deleted, renamed and typed (a resolution recorded after the run date is not
-- known yet).
with latest as (
    {{ latest_as_of(ref('stg_crm__complaint_versions'), 'complaint_id') }}
),

renamed as (
    select
        {{ crm_complaint_columns(as_of_end()) }}
    from latest
),

final as (
    select * from renamed
    where opened_at < {{ as_of_end() }}
)

select * from final
