-- Owns the profit concentration of the run date (the whale curve's summary, docs/rules.md
-- "Profit concentration"): one row per as_of, also when nobody was served (then the
-- shares are null). The customers served in the pyramid window are those of
-- customer_value_tiers with an order, a complaint, revenue or a cost to serve in it; their
-- profit is gross margin minus cost to serve. Ranked by profit (highest first, then
-- customer_id), the cumulative profit rises to a peak where the loss-makers begin and
-- falls back to the total: the peak's share of the total is what the profitable
-- customers make before the loss-makers take part of it away. The customers that make a
-- share s of profit are those whose higher-ranked customers made less than s of the
-- total (the ABC class A rule), counted only when the total is positive.
with served as (
    select * from {{ ref('int_value_profit_ranking') }}
),

totals as (
    select
        count(*) as customers,
        sum(profit) as total_profit,
        sum(case when profit > 0 then 1 else 0 end) as profitable_customers,
        sum(case when profit > 0 then profit else 0 end) as peak_profit,
        sum(case when profit < 0 then 1 else 0 end) as loss_making_customers,
        sum(case when profit < 0 then -profit else 0 end) as profit_destroyed,
        sum(case when total_profit > 0 and profit_before < 0.80 * total_profit then 1 else 0 end)
            as customers_for_80pct_profit,
        sum(case when total_profit > 0 and profit_before < 0.90 * total_profit then 1 else 0 end)
            as customers_for_90pct_profit
    from served
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(customers as integer) as customers,
        cast(coalesce(total_profit, 0) as numeric(18, 2)) as total_profit,
        cast(coalesce(profitable_customers, 0) as integer) as profitable_customers,
        cast(coalesce(peak_profit, 0) as numeric(18, 2)) as peak_profit,
        cast(case when total_profit > 0 then peak_profit / total_profit end as numeric(18, 6))
            as peak_profit_share,
        cast(case when customers > 0 then 1.0 * profitable_customers / customers end as numeric(18, 6))
            as peak_customer_share,
        cast(coalesce(loss_making_customers, 0) as integer) as loss_making_customers,
        cast(case when customers > 0 then 1.0 * loss_making_customers / customers end as numeric(18, 6))
            as loss_making_customer_share,
        cast(coalesce(profit_destroyed, 0) as numeric(18, 2)) as profit_destroyed,
        cast(case when total_profit > 0 then 1.0 * customers_for_80pct_profit / customers end as numeric(18, 6))
            as share_of_customers_for_80pct_profit,
        cast(case when total_profit > 0 then 1.0 * customers_for_90pct_profit / customers end as numeric(18, 6))
            as share_of_customers_for_90pct_profit
    from totals
)

select * from final
