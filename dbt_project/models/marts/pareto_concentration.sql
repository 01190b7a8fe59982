-- Owns the 80/20 concentration metrics of the run date: one row per as_of, also when
-- there are no buyers (then the shares are null). Uses the buyer ranking of
-- customer_value_tiers (revenue desc, tenure desc, customer_id asc). The top share of
-- customers (var pareto_top_customer_share) is the first ceil(share * buyers) ranks;
-- the customers that make a revenue share (var pareto_revenue_share) are those whose
-- higher-ranked buyers made less than that share (the same rule as ABC class A).
with tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

buyers as (
    select
        revenue_rank,
        trailing_12m_revenue,
        trailing_12m_margin,
        count(*) over () as buyers,
        sum(trailing_12m_revenue) over () as total_revenue,
        coalesce(sum(trailing_12m_revenue) over (
            order by revenue_rank rows between unbounded preceding and 1 preceding
        ), 0) as revenue_before
    from tiers
    where revenue_rank is not null
),

totals as (
    select
        count(*) as buyers,
        sum(trailing_12m_revenue) as revenue,
        sum(trailing_12m_margin) as gross_margin,
        sum(case
            when revenue_rank - 1 < cast({{ var('pareto_top_customer_share') }} as numeric(6, 4)) * buyers
                then 1 else 0
        end) as top_customers,
        sum(case
            when revenue_rank - 1 < cast({{ var('pareto_top_customer_share') }} as numeric(6, 4)) * buyers
                then trailing_12m_revenue else 0
        end) as top_revenue,
        sum(case
            when revenue_rank - 1 < cast({{ var('pareto_top_customer_share') }} as numeric(6, 4)) * buyers
                then trailing_12m_margin else 0
        end) as top_margin,
        sum(case
            when revenue_before < cast({{ var('pareto_revenue_share') }} as numeric(6, 4)) * total_revenue
                then 1 else 0
        end) as customers_for_revenue_share
    from buyers
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(buyers as integer) as buyers,
        cast(coalesce(revenue, 0) as numeric(18, 2)) as revenue,
        cast(coalesce(gross_margin, 0) as numeric(18, 2)) as gross_margin,
        cast(coalesce(top_customers, 0) as integer) as top20_customers,
        cast(case when revenue > 0 then top_revenue / revenue end as numeric(18, 6)) as top20_revenue_share,
        cast(case when gross_margin <> 0 then top_margin / gross_margin end as numeric(18, 6)) as top20_margin_share,
        cast(
            case when buyers > 0 then cast(customers_for_revenue_share as numeric(18, 6)) / buyers end
            as numeric(18, 6)
        ) as share_of_customers_for_80pct_revenue
    from totals
)

select * from final
