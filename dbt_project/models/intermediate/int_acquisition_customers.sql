-- Owns the acquisition view of every buyer as of the run date (docs/rules.md
-- "Acquisition channels and cohorts"): acquisition channel ('(unknown)' when the customer
-- master has none), cohort month (month of the first purchase), revenue and profit to
-- date (gross margin minus the cost to serve of every purchase order, complaint and
-- compensation to date, unit costs of the seed cost_to_serve) and the CLV step's 12-month
-- CLV of this as_of. One row per customer with a purchase.
with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

order_totals as (
    select * from {{ ref('int_customer_order_totals') }}
),

complaints as (
    select * from {{ ref('stg_crm__complaints') }}
),

lifetime_value as (
    select customer_id, clv_12m from {{ ref('customer_lifetime_value') }}
),

unit_costs as (
    select * from {{ ref('cost_to_serve') }}
),

complaint_totals as (
    select customer_id, count(*) as complaints, sum(compensation_amount) as compensation
    from complaints
    group by customer_id
),

final as (
    select
        order_totals.customer_id,
        cast(coalesce(customers.acquisition_channel, '(unknown)') as {{ crm_type_string() }}) as acquisition_channel,
        {{ crm_month_start('order_totals.first_order_date') }} as cohort_month,
        cast(extract(year from order_totals.first_order_date) * 12
            + extract(month from order_totals.first_order_date) as integer) as cohort_month_index,
        cast(order_totals.total_net_revenue as numeric(18, 2)) as revenue_to_date,
        cast(
            order_totals.total_gross_margin
            - order_totals.orders_to_date * unit_costs.order_handling_cost
            - coalesce(complaint_totals.complaints, 0) * unit_costs.complaint_handling_cost
            - coalesce(complaint_totals.compensation, 0)
            as numeric(18, 2)
        ) as profit_to_date,
        cast(lifetime_value.clv_12m as numeric(18, 2)) as clv_12m
    from order_totals
    inner join customers on order_totals.customer_id = customers.customer_id
    cross join unit_costs
    left join complaint_totals on order_totals.customer_id = complaint_totals.customer_id
    left join lifetime_value on order_totals.customer_id = lifetime_value.customer_id
)

select * from final
