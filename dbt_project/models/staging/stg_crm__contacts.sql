with latest as (
    {{ latest_as_of(source('raw', 'contacts'), 'contact_id') }}
),

final as (
    select
        contact_id,
        customer_id,
        name as contact_name,
        title,
        email,
        phone,
        lower(role) as role,
        last_verified_at,
        updated_at
    from latest
)

select * from final
