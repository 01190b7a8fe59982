-- Buying-centre coverage and contact hygiene of every customer account as of the run
-- date: which CUTE roles (Coach, User/maintainer, Technical gatekeeper, Economic
-- decision-maker) have a contact, coverage gaps of large accounts (var
-- large_customer_tiers without an economic decision-maker or without a coach), stale and
-- duplicate contacts. Counts and flags only: no name, email or phone.
{%- set large_tiers = var('large_customer_tiers') %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

contacts as (
    select * from {{ ref('int_contact_hygiene') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

per_account as (
    select
        customer_id,
        count(*) as contacts_total,
        max(case when cute_role = 'coach' then 1 else 0 end) as has_coach,
        max(case when cute_role = 'user' then 1 else 0 end) as has_user,
        max(case when cute_role = 'technical' then 1 else 0 end) as has_technical,
        max(case when cute_role = 'economic' then 1 else 0 end) as has_economic,
        sum(case when is_stale then 1 else 0 end) as stale_contacts,
        sum(case when is_duplicate then 1 else 0 end) as duplicate_contacts,
        sum(case when cute_role is null then 1 else 0 end) as contacts_without_role
    from contacts
    group by customer_id
),

final as (
    select
        cast(customers.customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        cast(tiers.value_tier as varchar(16)) as value_tier,
        cast(coalesce(per_account.has_coach, 0) = 1 as boolean) as has_coach,
        cast(coalesce(per_account.has_user, 0) = 1 as boolean) as has_user,
        cast(coalesce(per_account.has_technical, 0) = 1 as boolean) as has_technical,
        cast(coalesce(per_account.has_economic, 0) = 1 as boolean) as has_economic,
        cast(
            coalesce(per_account.has_coach, 0) + coalesce(per_account.has_user, 0)
            + coalesce(per_account.has_technical, 0) + coalesce(per_account.has_economic, 0)
            as integer
        ) as roles_covered,
        cast(coalesce(
            tiers.value_tier in {{ crm_in_list(large_tiers) }}
            and (coalesce(per_account.has_economic, 0) = 0 or coalesce(per_account.has_coach, 0) = 0),
            false
        ) as boolean) as is_coverage_gap,
        cast(coalesce(per_account.contacts_total, 0) as integer) as contacts_total,
        cast(coalesce(per_account.contacts_without_role, 0) as integer) as contacts_without_role,
        cast(coalesce(per_account.stale_contacts, 0) as integer) as stale_contacts,
        cast(coalesce(per_account.duplicate_contacts, 0) as integer) as duplicate_contacts
    from customers
    left join per_account on customers.customer_id = per_account.customer_id
    left join tiers on customers.customer_id = tiers.customer_id
)

select * from final
