-- Owns the inputs of the segment rules: one row per customer in stg_crm__customers with
-- the value tier, RFM segment, current credit grade, dormancy, product breadth and (once
-- the CLV step lands) the CLV outputs, plus the purchase-likelihood score.
--
-- purchase_likelihood: until the CLV step provides prob_alive it is a function of the
-- RFM scores, w * (r_score - 1) / 4 + (1 - w) * (f_score - 1) / 4 with
-- w = var purchase_likelihood_recency_weight, so 0 for the oldest / least frequent
-- quintiles and 1 for the best; null for prospects (no purchase history to score).
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
    where grade_quarter = {{ as_of_quarter_start() }}
),

churn as (
    select * from {{ ref('customer_churn') }}
),

final as (
    select
        customers.customer_id,
        {{ as_of_date() }} as as_of,
        cast(customers.account_manager as varchar) as account_manager,
        cast(summary.order_days > 0 as boolean) as has_purchase,
        cast(tiers.value_tier as varchar) as value_tier,
        cast(tiers.abc_class as varchar) as abc_class,
        cast(tiers.trailing_12m_revenue as numeric(18, 2)) as trailing_12m_revenue,
        cast(rfm.rfm_segment as varchar) as rfm_segment,
        rfm.r_score,
        rfm.f_score,
        cast(credit_grades.credit_grade as varchar) as credit_grade,
        cast(coalesce(churn.is_dormant, false) as boolean) as is_dormant,
        cast(summary.product_categories as integer) as product_categories,
        cast(summary.total_net_revenue as numeric(18, 2)) as historical_value,
        cast(summary.total_gross_margin as numeric(18, 2)) as historical_margin,
        -- filled by the CLV step (intermediate.clv_predictions) in a later change
        cast(null as double precision) as prob_alive,
        cast(null as numeric(18, 2)) as clv_12m,
        cast(
            case when rfm.r_score is not null then
                cast({{ var('purchase_likelihood_recency_weight') }} as numeric(6, 4)) * (rfm.r_score - 1) / 4.0
                + (1 - cast({{ var('purchase_likelihood_recency_weight') }} as numeric(6, 4))) * (rfm.f_score - 1) / 4.0
            end as numeric(6, 4)
        ) as purchase_likelihood
    from customers
    inner join summary on customers.customer_id = summary.customer_id
    inner join rfm on customers.customer_id = rfm.customer_id
    inner join tiers on customers.customer_id = tiers.customer_id
    left join credit_grades on customers.customer_id = credit_grades.customer_id
    left join churn on customers.customer_id = churn.customer_id
)

select * from final
