-- Owns LAST year's customer pyramid: the value tier each customer had as of
-- as_of - churn_year_days, by the same rule as customer_value_tiers (net revenue in the
-- pyramid basis window ending on that date, both ends included; buyers = positive
-- revenue, ranked by revenue desc, tenure desc, customer_id asc; a buyer at rank p of n
-- belongs to the first tier of seed value_tier_cutpoints with p - 1 < share * n; no
-- revenue in that window: 'No revenue', as in customer_value_tiers). Also
-- carries the trailing and prior 12-month net revenue as of the run date for the
-- top-customer decline. One row per customer in stg_crm__customers.
{%- set as_of = modules.datetime.date.fromisoformat(crm_as_of()) %}
{%- set year_days = var('churn_year_days') | int %}
{%- set prior_as_of = as_of - modules.datetime.timedelta(days=year_days) %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

tier_cutpoints as (
    select * from {{ ref('value_tier_cutpoints') }}
),

-- the window totals, kept per customer between runs (macros/customer_windows.sql):
-- last year's pyramid basis, the trailing 12 months and the 12 months before them
revenue as (
    select
        customer_id,
        prior_basis_net_revenue as prior_basis_revenue,
        year_net_revenue as trailing_12m_revenue,
        prior_year_net_revenue as prior_12m_revenue
    from {{ ref('int_customer_window_totals') }}
),

buyers as (
    select
        revenue.customer_id,
        row_number() over (
            order by
                revenue.prior_basis_revenue desc,
                {{ crm_days_between('customers.created_date', "cast('" ~ prior_as_of ~ "' as date)") }} desc,
                revenue.customer_id asc
        ) as revenue_rank,
        count(*) over () as buyers
    from revenue
    inner join customers on revenue.customer_id = customers.customer_id
    where revenue.prior_basis_revenue > 0
),

buyer_tiers as (
    {{ pyramid_tier_order('buyers', 'tier_cutpoints') }}
),

final as (
    select
        customers.customer_id,
        cast('{{ prior_as_of }}' as date) as prior_tier_as_of,
        cast(coalesce(tier_cutpoints.value_tier, 'No revenue') as varchar(16)) as prior_value_tier,
        cast(coalesce(revenue.trailing_12m_revenue, 0) as decimal(18, 2)) as trailing_12m_revenue,
        cast(coalesce(revenue.prior_12m_revenue, 0) as decimal(18, 2)) as prior_12m_revenue
    from customers
    left join revenue on customers.customer_id = revenue.customer_id
    left join buyer_tiers on customers.customer_id = buyer_tiers.customer_id
    left join tier_cutpoints on buyer_tiers.tier_order = tier_cutpoints.tier_order
)

select * from final
