-- Owns contact hygiene flags as of the run date, one row per contact in
-- stg_crm__contacts: CUTE role, stale (not verified within var contact_stale_days before
-- the run date, or never verified) and duplicate (an earlier contact - lower contact_id -
-- of the same account has the same normalised email, lower(trim(email)), or the same
-- normalised phone, digits only). Email and phone are only compared here, as salted
-- SHA-256 keys (the salt is read from the warehouse through stg_ops__pii_salt, so it
-- never appears in dbt's compiled SQL or artifacts); no personal field and no key
-- leaves this model.
{%- set email_norm = "nullif(lower(trim(email)), '')" %}
{%- set phone_norm = "nullif(" ~ crm_digits_only('phone') ~ ", '')" %}
{%- set stale_before = (modules.datetime.date.fromisoformat(crm_as_of())
    - modules.datetime.timedelta(days=var('contact_stale_days') | int)).isoformat() %}

with contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

pii as (
    select salt from {{ ref('stg_ops__pii_salt') }}
),

normalised as (
    select
        contact_id,
        customer_id,
        role,
        last_verified_at,
        {{ crm_sha256_hex('pii.salt || ' ~ email_norm) }} as email_key,
        {{ crm_sha256_hex('pii.salt || ' ~ phone_norm) }} as phone_key
    from contacts
    cross join pii
),

duplicates as (
    select distinct later.contact_id
    from normalised as later
    inner join normalised as earlier
        on later.customer_id = earlier.customer_id
        and earlier.contact_id < later.contact_id
        and (later.email_key = earlier.email_key or later.phone_key = earlier.phone_key)
),

final as (
    select
        normalised.contact_id,
        normalised.customer_id,
        case when normalised.role in ('coach', 'user', 'technical', 'economic') then normalised.role end as cute_role,
        normalised.last_verified_at is null
            or normalised.last_verified_at < cast('{{ stale_before }}' as timestamp) as is_stale,
        duplicates.contact_id is not null as is_duplicate
    from normalised
    left join duplicates on normalised.contact_id = duplicates.contact_id
)

select * from final
