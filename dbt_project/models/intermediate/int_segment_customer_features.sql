-- Owns the inputs of the segment rules: one row per customer in stg_crm__customers with
-- the value tier, RFM segment, current credit grade, dormancy, product breadth, the CLV
-- outputs of this as_of (customer_lifetime_value, from the CLV step) and the
-- purchase-likelihood score.
--
-- purchase_likelihood: the model's probability of at least one purchase in the next 90
-- days, customer_lifetime_value.prob_purchase_90d =
--     P(alive) * (1 - ((alpha + T) / (alpha + T + h)) ^ (r + x)),  h = 90 days,
-- (purchase_likelihood_method 'clv_model'). When customer_lifetime_value has no row for
-- the customer (the fit of this as_of failed, so the mart is empty) it falls back to the
-- RFM score w * (r_score - 1) / 4 + (1 - w) * (f_score - 1) / 4 with
-- w = var purchase_likelihood_recency_weight ('rfm_score'): 0 for the oldest / least
-- frequent quintiles and 1 for the best. Null for prospects (no purchase history).
-- prob_alive and clv_12m are null without a model row.
with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

summary as (
    select * from {{ ref('int_customer_order_summary') }}
),

rfm as (
    select * from {{ ref('customer_rfm') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

-- the grade that holds for the quarter containing the run date
credit_grades as (
    select customer_id, credit_grade
    from {{ ref('customer_credit_grades') }}
    where grade_quarter = {{ credit_grade_quarter() }}
),

churn as (
    select * from {{ ref('customer_churn') }}
),

lifetime_value as (
    select * from {{ ref('customer_lifetime_value') }}
),

rfm_likelihood as (
    select
        customer_id,
        cast(case when r_score is not null then
            cast({{ var('purchase_likelihood_recency_weight') }} as numeric(6, 4)) * (r_score - 1) / 4.0
            + (1 - cast({{ var('purchase_likelihood_recency_weight') }} as numeric(6, 4))) * (f_score - 1) / 4.0
        end as numeric(9, 6)) as score
    from rfm
),

final as (
    select
        customers.customer_id,
        {{ as_of_date() }} as as_of,
        cast(customers.account_manager as {{ crm_type_string() }}) as account_manager,
        cast(summary.order_days > 0 as boolean) as has_purchase,
        cast(tiers.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(tiers.abc_class as {{ crm_type_string() }}) as abc_class,
        cast(tiers.trailing_12m_revenue as numeric(18, 2)) as trailing_12m_revenue,
        cast(rfm.rfm_segment as {{ crm_type_string() }}) as rfm_segment,
        rfm.r_score,
        rfm.f_score,
        cast(credit_grades.credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(coalesce(churn.is_dormant, false) as boolean) as is_dormant,
        cast(summary.product_categories as integer) as product_categories,
        cast(summary.total_net_revenue as numeric(18, 2)) as historical_value,
        cast(summary.total_gross_margin as numeric(18, 2)) as historical_margin,
        cast(lifetime_value.prob_alive as numeric(9, 6)) as prob_alive,
        cast(lifetime_value.clv_12m as numeric(18, 2)) as clv_12m,
        cast(
            coalesce(cast(lifetime_value.prob_purchase_90d as numeric(9, 6)), rfm_likelihood.score)
            as numeric(9, 6)
        ) as purchase_likelihood,
        cast(case
            when lifetime_value.prob_purchase_90d is not null then 'clv_model'
            when rfm_likelihood.score is not null then 'rfm_score'
        end as {{ crm_type_string() }}) as purchase_likelihood_method
    from customers
    inner join summary on customers.customer_id = summary.customer_id
    inner join rfm on customers.customer_id = rfm.customer_id
    inner join tiers on customers.customer_id = tiers.customer_id
    left join credit_grades on customers.customer_id = credit_grades.customer_id
    left join churn on customers.customer_id = churn.customer_id
    left join lifetime_value on customers.customer_id = lifetime_value.customer_id
    left join rfm_likelihood on customers.customer_id = rfm_likelihood.customer_id
)

select * from final
