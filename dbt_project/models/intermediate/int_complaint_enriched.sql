-- Owns per-complaint measures as of the run date: normalised category, resolution state
-- and time, and whether the complaint came in within var complaint_post_order_days after
-- an order (the complaint's own order when it names one, otherwise the customer's latest
-- purchase day on or before the opening day). A resolution time is only measured for a
-- resolved ticket whose resolved_at is not before opened_at (such rows are a data error
-- quarantined upstream; guarded here too). One row per complaint in stg_crm__complaints.
{%- set categories = complaint_category_names() %}

with complaints as (
    select * from {{ ref('stg_crm__complaints') }}
),

reference_orders as (
    {{ complaint_reference_orders('complaints', ref('int_orders')) }}
),

joined as (
    select
        complaints.complaint_id,
        complaints.customer_id,
        complaints.opened_at,
        case
            when lower(complaints.category) in {{ crm_in_list(categories) }} then lower(complaints.category)
            else 'other'
        end as category,
        complaints.severity,
        complaints.status,
        complaints.resolved_at,
        complaints.compensation_amount,
        reference_orders.reference_order_date
    from complaints
    left join reference_orders
        on complaints.complaint_id = reference_orders.complaint_id
),

final as (
    select
        complaint_id,
        customer_id,
        opened_at,
        cast(opened_at as date) as opened_date,
        category,
        severity,
        compensation_amount,
        status = 'resolved' and resolved_at is not null as is_resolved,
        not (status = 'resolved' and resolved_at is not null) as is_open,
        cast(case
            when status = 'resolved' and resolved_at is not null and resolved_at >= opened_at
                then {{ crm_hours_between('opened_at', 'resolved_at') }}
        end as decimal(18, 4)) as resolution_hours,
        reference_order_date,
        coalesce(
            {{ crm_days_between('reference_order_date', 'opened_at') }}
                between 0 and {{ var('complaint_post_order_days') }},
            false
        ) as is_within_post_order_window
    from joined
)

select * from final
