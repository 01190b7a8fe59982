-- Owns the profit ranking of the customers served in the pyramid window (docs/rules.md
-- "Profit concentration"): one row per customer of customer_value_tiers with an order, a
-- complaint, revenue or a cost to serve in the window, ranked by profit (gross margin
-- minus cost to serve; highest first, then customer_id), with the cumulative profit of
-- the customers ranked before and up to it.
with tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

served as (
    select customer_id, profit
    from tiers
    where orders_12m > 0 or complaints_12m > 0 or trailing_12m_revenue <> 0 or cost_to_serve <> 0
),

final as (
    select
        customer_id,
        cast(profit as numeric(18, 2)) as profit,
        cast(row_number() over (order by profit desc, customer_id) as integer) as profit_rank,
        cast(sum(profit) over (
            order by profit desc, customer_id rows between unbounded preceding and current row
        ) as numeric(18, 2)) as cumulative_profit,
        cast(coalesce(sum(profit) over (
            order by profit desc, customer_id rows between unbounded preceding and 1 preceding
        ), 0) as numeric(18, 2)) as profit_before,
        cast(sum(profit) over () as numeric(18, 2)) as total_profit
    from served
)

select * from final
