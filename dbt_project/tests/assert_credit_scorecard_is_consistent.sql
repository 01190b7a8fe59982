-- The scorecard adds up: financial indicators 30 points, non-financial 70 (total 100);
-- each indicator's max_points equals its best bin; a fallback never exceeds max_points.
with scorecard as (
    select * from {{ ref('credit_scorecard') }}
),

bins as (
    select indicator, max(points) as best_points from {{ ref('credit_scorecard_bins') }} group by indicator
),

totals as (
    select
        sum(case when is_financial then max_points else 0 end) as financial,
        sum(case when not is_financial then max_points else 0 end) as non_financial,
        count(*) as indicators
    from scorecard
)

select 'totals' as problem, cast(null as {{ crm_type_string() }}) as indicator
from totals
where financial <> 30 or non_financial <> 70 or indicators <> 20
union all
select 'max_points is not the best bin', scorecard.indicator
from scorecard
left join bins on scorecard.indicator = bins.indicator
where bins.best_points is null or bins.best_points <> scorecard.max_points
union all
select 'fallback above max', indicator
from scorecard
where fallback_points > max_points or fallback_points < 0
