-- Owns the mix of churn reasons per month as of the run date (docs/rules.md "Why customers
-- leave"): one row per churn month and reason of macro churn_reason_rules (plus
-- 'none_visible') with the customers who churned in the month with that reason, their
-- share of the month's churned customers and the revenue that left with them. A customer
-- with several reasons counts under each, so the shares of a month add up to more than 1;
-- cost_rank orders the month's reasons by revenue lost (highest first, then name).
{%- set rules = churn_reason_rules() %}

with reasons as (
    select * from {{ ref('churn_reasons') }}
),

months as (
    select churn_month, count(*) as churned_customers, sum(revenue_lost) as month_revenue_lost
    from reasons
    group by churn_month
),

long_form as (
    {%- for name, condition in rules %}
    select churn_month, '{{ name }}' as reason, revenue_lost from reasons where reason_{{ name }}
    union all
    {%- endfor %}
    select churn_month, 'none_visible' as reason, revenue_lost from reasons where reason_count = 0
),

grouped as (
    select churn_month, reason, count(*) as customers, sum(revenue_lost) as revenue_lost
    from long_form
    group by churn_month, reason
),

final as (
    select
        cast(grouped.churn_month as date) as churn_month,
        cast(grouped.reason as {{ crm_type_string() }}) as reason,
        cast({{ as_of_date() }} as date) as as_of,
        cast(grouped.customers as integer) as customers,
        cast(months.churned_customers as integer) as churned_customers,
        cast(1.0 * grouped.customers / months.churned_customers as numeric(9, 6)) as customer_share,
        cast(grouped.revenue_lost as numeric(18, 2)) as revenue_lost,
        cast(row_number() over (
            partition by grouped.churn_month order by grouped.revenue_lost desc, grouped.reason
        ) as integer) as cost_rank
    from grouped
    inner join months on grouped.churn_month = months.churn_month
)

select * from final
