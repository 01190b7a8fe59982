-- Complaint profile of every customer as of the run date (zeros where none): volume, per
-- 100 purchase orders, by category and severity, resolution times, open backlog,
-- compensation, complaints within the post-order window, and repeat complainers (a large
-- account - var large_customer_tiers, current value tier - with at least
-- var complaint_repeat_min complaints opened in the last var complaint_repeat_window_days).
{%- set categories = complaint_category_names() %}
{%- set large_tiers = var('large_customer_tiers') %}
{%- set repeat_start = (modules.datetime.date.fromisoformat(crm_as_of())
    - modules.datetime.timedelta(days=(var('complaint_repeat_window_days') | int) - 1)).isoformat() %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

complaints as (
    select * from {{ ref('int_complaint_enriched') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

order_counts as (
    select customer_id, count(*) as purchase_orders
    from orders
    where is_purchase
    group by customer_id
),

complaint_totals as (
    select
        customer_id,
        count(*) as complaints_total,
        sum(case when opened_date >= cast('{{ repeat_start }}' as date) then 1 else 0 end) as complaints_last_window,
        {%- for cat in categories %}
        sum(case when category = '{{ cat }}' then 1 else 0 end) as complaints_{{ cat }},
        {%- endfor %}
        {%- for sev in [1, 2, 3, 4] %}
        sum(case when severity = {{ sev }} then 1 else 0 end) as complaints_sev_{{ sev }},
        {%- endfor %}
        sum(case when is_resolved then 1 else 0 end) as resolved_complaints,
        sum(case when is_open then 1 else 0 end) as open_backlog,
        sum(compensation_amount) as compensation_total,
        sum(case when is_within_post_order_window then 1 else 0 end) as complaints_within_post_order_window,
        {{ crm_median('resolution_hours') }} as median_resolution_hours,
        {{ crm_percentile_cont('resolution_hours', 0.9) }} as p90_resolution_hours,
        max(opened_at) as last_complaint_at
    from complaints
    group by customer_id
),

final as (
    select
        cast(customers.customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        cast(tiers.value_tier as varchar(16)) as value_tier,
        cast(coalesce(complaint_totals.complaints_total, 0) as integer) as complaints_total,
        cast(coalesce(complaint_totals.complaints_last_window, 0) as integer) as complaints_last_365d,
        cast(coalesce(order_counts.purchase_orders, 0) as integer) as purchase_orders,
        cast(case
            when order_counts.purchase_orders > 0
                then 100.0 * coalesce(complaint_totals.complaints_total, 0) / order_counts.purchase_orders
        end as decimal(18, 4)) as complaints_per_100_orders,
        {%- for cat in categories %}
        cast(coalesce(complaint_totals.complaints_{{ cat }}, 0) as integer) as complaints_{{ cat }},
        {%- endfor %}
        {%- for sev in [1, 2, 3, 4] %}
        cast(coalesce(complaint_totals.complaints_sev_{{ sev }}, 0) as integer) as complaints_sev_{{ sev }},
        {%- endfor %}
        cast(coalesce(complaint_totals.resolved_complaints, 0) as integer) as resolved_complaints,
        cast(complaint_totals.median_resolution_hours as decimal(18, 2)) as median_resolution_hours,
        cast(complaint_totals.p90_resolution_hours as decimal(18, 2)) as p90_resolution_hours,
        cast(coalesce(complaint_totals.open_backlog, 0) as integer) as open_backlog,
        cast(coalesce(complaint_totals.compensation_total, 0) as decimal(18, 2)) as compensation_total,
        cast(coalesce(complaint_totals.complaints_within_post_order_window, 0) as integer)
            as complaints_within_30d_of_order,
        cast(complaint_totals.last_complaint_at as timestamp) as last_complaint_at,
        cast(coalesce(
            tiers.value_tier in {{ crm_in_list(large_tiers) }}
            and complaint_totals.complaints_last_window >= {{ var('complaint_repeat_min') }},
            false
        ) as boolean) as is_repeat_complainer
    from customers
    left join order_counts on customers.customer_id = order_counts.customer_id
    left join complaint_totals on customers.customer_id = complaint_totals.customer_id
    left join tiers on customers.customer_id = tiers.customer_id
)

select * from final
