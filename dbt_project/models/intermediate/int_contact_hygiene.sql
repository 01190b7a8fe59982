-- Owns contact hygiene flags as of the run date, one row per contact in
-- stg_crm__contacts: CUTE role, stale (not verified within var contact_stale_days before
-- the run date, or never verified) and duplicate (an earlier contact - lower contact_id -
-- of the same account has the same normalised email, lower(trim(email)), or the same
-- normalised phone, digits only). Email and phone are only compared here; no personal
-- field leaves this model.
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
        nullif(lower(trim(email)), '') as email_key,
        nullif({{ crm_digits_only('phone') }}, '') as phone_key
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
