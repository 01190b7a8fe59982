-- The salt of the hashed keys of personal data, kept by the pipeline in ops.pii_salt.
-- Always exactly one row (an empty table gives an empty salt rather than no row, so a
-- join never drops contacts).
with source as (
    select * from {{ source('ops', 'pii_salt') }}
),

final as (
    select coalesce(max(salt), '') as salt
    from source
)

select * from final
