with latest as (
    {{ latest_as_of(source('raw', 'complaints'), 'complaint_id') }}
),

final as (
    select
        complaint_id,
        customer_id,
        order_id,
        opened_at,
        category,
        severity,
        channel,
        status,
        case when resolved_at < {{ as_of_end() }} then resolved_at end as resolved_at,
        cast(coalesce(compensation_amount, 0) as decimal(18, 2)) as compensation_amount,
        updated_at
    from latest
    where opened_at < {{ as_of_end() }}
)

select * from final
