-- Owns contact hygiene flags as of the run date, one row per contact in
-- stg_crm__contacts: CUTE role, stale (not verified within var contact_stale_days before
-- the run date, or never verified) and duplicate (an earlier contact - lower contact_id -
-- of the same account has the same normalised email, lower(trim(email)), or the same
-- normalised phone, digits only). Email and phone are only compared here, as salted
-- SHA-256 keys (salt: var pii_salt, by default the environment variable CRM_PII_SALT),
-- so not even the model's intermediate relation holds a readable contact detail; no
-- personal field and no key leaves this model.
{%- set salt_sql = "'" ~ (var('pii_salt', env_var('CRM_PII_SALT', '')) | string | replace("'", "''")) ~ "'" %}
{%- set email_norm = "nullif(lower(trim(email)), '')" %}
{%- set phone_norm = "nullif(" ~ crm_digits_only('phone') ~ ", '')" %}
{%- set stale_before = (modules.datetime.date.fromisoformat(var('as_of') | string)
    - modules.datetime.timedelta(days=var('contact_stale_days') | int)).isoformat() %}

with contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

normalised as (
    select
        contact_id,
        customer_id,
        role,
        last_verified_at,
        {%- if target.type == 'postgres' %}
        encode(sha256(convert_to({{ salt_sql }} || {{ email_norm }}, 'UTF8')), 'hex') as email_key,
        encode(sha256(convert_to({{ salt_sql }} || {{ phone_norm }}, 'UTF8')), 'hex') as phone_key
        {%- else %}
        sha256({{ salt_sql }} || {{ email_norm }}) as email_key,
        sha256({{ salt_sql }} || {{ phone_norm }}) as phone_key
        {%- endif %}
    from contacts
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
