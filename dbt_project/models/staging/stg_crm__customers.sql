with latest as (
    {{ latest_as_of(source('raw', 'customers'), 'customer_id') }}
),

final as (
    select
        customer_id,
        name as customer_name,
        customer_type,
        industry,
        region,
        acquisition_channel,
        account_manager,
        cast(credit_limit as decimal(18, 2)) as credit_limit,
        status,
        created_at,
        cast(created_at as date) as created_date,
        updated_at
    from latest
    where cast(created_at as date) <= {{ as_of_date() }}
)

select * from final
