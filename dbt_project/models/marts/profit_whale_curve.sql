-- Owns the points of the whale curve of the run date (docs/rules.md "Profit
-- concentration"): one row per as_of and percentile 0..100 of the customers served in the
-- pyramid window, ranked by profit as in profit_concentration. At percentile p the curve
-- holds the first ceil(p x customers / 100) customers and their cumulative profit, also as
-- a share of the total profit (null when the total is not positive: a share of a loss does
-- not draw a whale). With nobody served, every point has 0 customers.
with served as (
    select * from {{ ref('int_value_profit_ranking') }}
),

percentiles as (
    select * from (
        values {% for p in range(101) %}({{ p }}){{ ',' if not loop.last }}{% endfor %}
    ) as points (percentile)
),

population as (
    select count(*) as customers, sum(profit) as total_profit from served
),

points as (
    select
        percentiles.percentile,
        population.customers,
        population.total_profit,
        -- ceil(percentile x customers / 100), exact: the quotient is never within 1e-2 of
        -- an integer unless it is one
        cast(ceil(percentiles.percentile * population.customers / 100.0) as integer) as customers_up_to
    from percentiles
    cross join population
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(points.percentile as integer) as percentile,
        cast(points.customers_up_to as integer) as customers_up_to,
        cast(case when points.customers > 0 then 1.0 * points.customers_up_to / points.customers end
            as numeric(18, 6)) as customer_share,
        cast(coalesce(served.cumulative_profit, 0) as numeric(18, 2)) as cumulative_profit,
        cast(case when points.total_profit > 0 then coalesce(served.cumulative_profit, 0) / points.total_profit end
            as numeric(18, 6)) as cumulative_profit_share
    from points
    left join served on served.profit_rank = points.customers_up_to
)

select * from final
