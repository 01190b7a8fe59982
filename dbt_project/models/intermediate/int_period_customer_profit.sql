-- Owns the profit of every customer in every calendar month and quarter up to the run date
-- (docs/rules.md "Retention"): one row per period type
-- ('month', 'quarter'), period start and customer with a purchase order or a complaint in
-- the period. profit = gross margin of the period's orders minus their cost to serve
-- (purchase orders and complaints at the unit costs of the seed cost_to_serve, plus
-- compensation), the rule of customer_value_tiers applied to the period.
with orders as (
    select * from {{ ref('int_orders') }}
),

complaints as (
    select * from {{ ref('stg_crm__complaints') }}
),

unit_costs as (
    select * from {{ ref('cost_to_serve') }}
),

activity as (
    {%- for period_type in ['month', 'quarter'] %}
    {%- set start = crm_month_start('order_date') if period_type == 'month' else crm_quarter_start('order_date') %}
    select
        '{{ period_type }}' as period_type,
        {{ start }} as period_start,
        customer_id,
        sum(gross_margin) as gross_margin,
        sum(case when is_purchase then 1 else 0 end) as purchase_orders,
        0 as complaints,
        0 as compensation
    from orders
    group by {{ start }}, customer_id
    union all
    {%- set start = crm_month_start('opened_at') if period_type == 'month' else crm_quarter_start('opened_at') %}
    select
        '{{ period_type }}' as period_type,
        {{ start }} as period_start,
        customer_id,
        0 as gross_margin,
        0 as purchase_orders,
        count(*) as complaints,
        sum(compensation_amount) as compensation
    from complaints
    group by {{ start }}, customer_id
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

final as (
    select
        cast(activity.period_type as varchar(8)) as period_type,
        cast(activity.period_start as date) as period_start,
        activity.customer_id,
        cast(
            sum(activity.gross_margin)
            - sum(activity.purchase_orders) * max(unit_costs.order_handling_cost)
            - sum(activity.complaints) * max(unit_costs.complaint_handling_cost)
            - sum(activity.compensation)
            as numeric(18, 2)
        ) as profit
    from activity
    cross join unit_costs
    group by activity.period_type, activity.period_start, activity.customer_id
)

select * from final
