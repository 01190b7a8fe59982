-- Owns the reorder reminders of the run date (docs/rules.md "Reminders before the due
-- date"): the customers to call before their next purchase falls due, not after it is
-- overdue. One row per customer whose expected next purchase (customer_churn: last
-- purchase day + median interval) falls within var reorder_reminder_lead_days days from the
-- run date (0 = due today), who is not lost. With owner, typical order value (the median
-- order, the lower middle one of an even count: net revenue of the invoiced orders in the var trailing_days days up to the run date), the
-- CLV step's expected order value, 12-month CLV and probability alive, and which
-- buying-centre roles have a contact at the account (flags only, no personal data).
-- reminder_rank orders each account manager's list by value: 12-month CLV, then
-- trailing 12-month revenue (highest first), then customer_id.
{%- set lead_days = var('reorder_reminder_lead_days') | int %}
{%- set window_start = (modules.datetime.date.fromisoformat(crm_as_of())
    - modules.datetime.timedelta(days=(var("trailing_days") | int) - 1)).isoformat() %}

with churn as (
    select * from {{ ref('customer_churn') }}
),

customers as (
    select * from {{ ref('stg_crm__customers') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

lifetime_value as (
    select * from {{ ref('customer_lifetime_value') }}
),

coverage as (
    select * from {{ ref('account_contact_coverage') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

due as (
    select
        customer_id,
        expected_next_purchase_date,
        {{ crm_days_between(as_of_date(), 'expected_next_purchase_date') }} as days_until_due
    from churn
    where expected_next_purchase_date >= {{ as_of_date() }}
      and expected_next_purchase_date <= {{ crm_add_days(as_of_date(), lead_days) }}
      and not coalesce(is_lost, false)
),

typical_orders as (
    select
        orders.customer_id,
        {{ crm_percentile_disc('orders.net_revenue', 0.5) }} as typical_order_value
    from orders
    inner join due on orders.customer_id = due.customer_id
    where {{ is_invoiced('orders.status') }}
      and orders.order_date >= cast('{{ window_start }}' as date)
    group by orders.customer_id
),

final as (
    select
        cast(due.customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        cast({{ crm_account_manager('customers.account_manager') }} as {{ crm_type_string() }}) as account_manager,
        cast(tiers.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(due.expected_next_purchase_date as date) as expected_next_purchase_date,
        cast(due.days_until_due as integer) as days_until_due,
        cast(typical_orders.typical_order_value as numeric(18, 2)) as typical_order_value,
        cast(lifetime_value.expected_avg_order_value as numeric(18, 2)) as expected_avg_order_value,
        cast(lifetime_value.clv_12m as numeric(18, 2)) as clv_12m,
        cast(lifetime_value.prob_alive as numeric(9, 6)) as prob_alive,
        cast(lifetime_value.prob_alive_90d as numeric(9, 6)) as prob_alive_90d,
        cast(tiers.trailing_12m_revenue as numeric(18, 2)) as trailing_12m_revenue,
        cast(coverage.has_coach as boolean) as has_coach,
        cast(coverage.has_user as boolean) as has_user,
        cast(coverage.has_technical as boolean) as has_technical,
        cast(coverage.has_economic as boolean) as has_economic,
        cast(coverage.roles_covered as integer) as roles_covered,
        cast(row_number() over (
            partition by {{ crm_account_manager('customers.account_manager') }}
            order by lifetime_value.clv_12m desc nulls last, tiers.trailing_12m_revenue desc, due.customer_id
        ) as integer) as reminder_rank
    from due
    inner join customers on due.customer_id = customers.customer_id
    left join tiers on due.customer_id = tiers.customer_id
    left join lifetime_value on due.customer_id = lifetime_value.customer_id
    left join coverage on due.customer_id = coverage.customer_id
    left join typical_orders on due.customer_id = typical_orders.customer_id
)

select * from final
