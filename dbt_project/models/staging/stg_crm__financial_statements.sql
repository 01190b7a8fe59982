-- One row per filed financial statement: its latest version known on the run date,
-- unless deleted, renamed and typed.
with latest as (
    {{ latest_as_of(ref('stg_crm__financial_statement_versions'), 'statement_id') }}
),

renamed as (
    select
        {{ crm_financial_statement_columns() }}
    from latest
),

final as (
    select * from renamed
)

select * from final
