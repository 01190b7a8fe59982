-- Owns the per-customer inputs of the value pyramid and of cost to serve: net revenue,
-- gross margin, purchase orders, complaints and compensation in the pyramid basis window
-- (var pyramid_basis_days, default 365 days ending on the run date, both ends included).
-- One row per customer in stg_crm__customers.
{%- set window_start = (modules.datetime.date.fromisoformat(crm_as_of())
    - modules.datetime.timedelta(days=(var("pyramid_basis_days") | int) - 1)).isoformat() %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

-- the purchase totals of the window, kept per customer between runs
order_totals as (
    select
        customer_id,
        basis_net_revenue as net_revenue,
        basis_gross_margin as gross_margin,
        basis_orders as orders
    from {{ ref('int_customer_window_totals') }}
),

complaints as (
    select * from {{ ref('stg_crm__complaints') }}
    where opened_at >= cast('{{ window_start }}' as timestamp)
),

complaint_totals as (
    select
        customer_id,
        count(*) as complaints,
        sum(compensation_amount) as compensation
    from complaints
    group by customer_id
),

final as (
    select
        customers.customer_id,
        cast({{ dbt.datediff('customers.created_date', as_of_date(), 'day') }} as integer) as tenure_days,
        cast(coalesce(order_totals.net_revenue, 0) as numeric(18, 2)) as window_net_revenue,
        cast(coalesce(order_totals.gross_margin, 0) as numeric(18, 2)) as window_gross_margin,
        cast(coalesce(order_totals.orders, 0) as integer) as window_orders,
        cast(coalesce(complaint_totals.complaints, 0) as integer) as window_complaints,
        cast(coalesce(complaint_totals.compensation, 0) as numeric(18, 2)) as window_compensation
    from customers
    left join order_totals on customers.customer_id = order_totals.customer_id
    left join complaint_totals on customers.customer_id = complaint_totals.customer_id
)

select * from final
