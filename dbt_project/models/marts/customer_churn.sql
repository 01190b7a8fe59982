-- Churn status of every customer as of the run date: expected next purchase from the
-- customer's own median inter-purchase interval, overdue to reorder, dormant, lost, and
-- the decline of last year's top customers. Customers who never bought are neither
-- dormant nor lost nor overdue (they are prospects): their flags are false.
{%- set large_tiers = var('large_customer_tiers') %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

rhythm as (
    select * from {{ ref('int_churn_purchase_intervals') }}
),

tiers as (
    select * from {{ ref('int_churn_prior_value_tiers') }}
),

lifetime_value as (
    select customer_id, prob_alive, prob_alive_90d from {{ ref('customer_lifetime_value') }}
),

measured as (
    select
        customers.customer_id,
        rhythm.first_order_date,
        rhythm.last_order_date,
        coalesce(rhythm.purchase_days, 0) as purchase_days,
        rhythm.median_interval_days,
        {{ crm_days_between('rhythm.last_order_date', as_of_date()) }} as days_since_last_order,
        -- next purchase due one median interval after the last (rounded to whole days)
        case
            when rhythm.median_interval_days is not null
                then {{ crm_add_days('rhythm.last_order_date', 'round(rhythm.median_interval_days, 0)') }}
        end as expected_next_purchase_date,
        case
            when rhythm.last_order_date is not null
                then greatest(
                    {{ var('churn_dormancy_min_days') }},
                    coalesce({{ var('churn_dormancy_interval_multiple') }} * rhythm.median_interval_days, 0)
                )
        end as dormancy_threshold_days,
        -- from the CLV step; null = unknown (fit failed this as_of, or a prospect)
        cast(lifetime_value.prob_alive as decimal(9, 6)) as prob_alive,
        cast(lifetime_value.prob_alive_90d as decimal(9, 6)) as prob_alive_90d,
        tiers.prior_value_tier,
        tiers.prior_tier_as_of,
        tiers.trailing_12m_revenue,
        tiers.prior_12m_revenue
    from customers
    left join rhythm on customers.customer_id = rhythm.customer_id
    left join tiers on customers.customer_id = tiers.customer_id
    left join lifetime_value on customers.customer_id = lifetime_value.customer_id
),

flagged as (
    select
        measured.*,
        case
            when expected_next_purchase_date is not null
                then greatest({{ crm_days_between('expected_next_purchase_date', as_of_date()) }}, 0)
        end as days_overdue
    from measured
),

final as (
    select
        cast(customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        cast(first_order_date as date) as first_order_date,
        cast(last_order_date as date) as last_order_date,
        cast(purchase_days as integer) as purchase_days,
        cast(days_since_last_order as integer) as days_since_last_order,
        cast(median_interval_days as decimal(18, 2)) as median_interval_days,
        cast(expected_next_purchase_date as date) as expected_next_purchase_date,
        cast(days_overdue as integer) as days_overdue,
        cast(coalesce(
            days_overdue > {{ var('churn_overdue_factor') }} * median_interval_days, false
        ) as boolean) as is_overdue_to_reorder,
        cast(dormancy_threshold_days as decimal(18, 2)) as dormancy_threshold_days,
        cast(coalesce(days_since_last_order >= dormancy_threshold_days, false) as boolean) as is_dormant,
        cast(prob_alive as decimal(9, 6)) as prob_alive,
        cast(
            last_order_date is not null
            and (
                days_since_last_order >= {{ var('churn_lost_days') }}
                or coalesce(prob_alive, 1) < {{ var('churn_lost_prob_alive') }}
            )
            as boolean
        ) as is_lost,
        cast(prior_tier_as_of as date) as prior_tier_as_of,
        cast(prior_value_tier as varchar(16)) as prior_value_tier,
        cast(trailing_12m_revenue as decimal(18, 2)) as trailing_12m_revenue,
        cast(prior_12m_revenue as decimal(18, 2)) as prior_12m_revenue,
        cast(case
            when prior_12m_revenue > 0 then (trailing_12m_revenue - prior_12m_revenue) / prior_12m_revenue
        end as decimal(18, 4)) as revenue_change_pct,
        cast(coalesce(
            prior_value_tier in {{ crm_in_list(large_tiers) }}
            and trailing_12m_revenue < (1 - {{ var('churn_top_decline_threshold') }}) * prior_12m_revenue,
            false
        ) as boolean) as is_top_customer_decline,
        cast(prob_alive_90d as decimal(9, 6)) as prob_alive_90d
    from flagged
)

select * from final
