-- Owns the customer pyramid: the revenue rank of each buyer and its tier, as of the run
-- date. One row per customer in stg_crm__customers.
--
-- Buyers are customers with positive net revenue in the pyramid window; they are ranked
-- by revenue desc, tenure desc (older first), customer_id asc, so every rank is unique
-- and the tier sizes are exact. A buyer at rank p of n belongs to the first tier (seed
-- value_tier_cutpoints) whose cumulative share c satisfies (p - 1) < c * n: the
-- cumulative tier size is ceil(c * n), so 1,000 buyers give 10 / 40 / 150 / 800. The
-- comparison is in exact decimals. Everyone else gets value_tier 'No revenue'.
with window_totals as (
    select * from {{ ref('int_value_customer_window') }}
),

tier_cutpoints as (
    select * from {{ ref('value_tier_cutpoints') }}
),

buyers as (
    select
        customer_id,
        row_number() over (
            order by window_net_revenue desc, tenure_days desc, customer_id asc
        ) as revenue_rank,
        count(*) over () as buyers
    from window_totals
    where window_net_revenue > 0
),

buyer_tiers as (
    {{ pyramid_tier_order('buyers', 'tier_cutpoints') }}
),

final as (
    select
        window_totals.customer_id,
        cast(buyers.revenue_rank as integer) as revenue_rank,
        cast(coalesce(tier_cutpoints.value_tier, 'No revenue') as {{ crm_type_string() }}) as value_tier
    from window_totals
    left join buyers on window_totals.customer_id = buyers.customer_id
    left join buyer_tiers on window_totals.customer_id = buyer_tiers.customer_id
    left join tier_cutpoints on buyer_tiers.tier_order = tier_cutpoints.tier_order
)

select * from final
