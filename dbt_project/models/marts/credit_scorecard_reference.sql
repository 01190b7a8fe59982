-- The scorecard a credit grade is read against, published as credit_scorecard: every
-- indicator with its category, whether it is financial, its maximum and fallback points,
-- and each of its bins with the points a value in it scores. The seeds' stand-ins for
-- minus and plus infinity (-999999999, 999999999) are published as open bounds (null).
{{ config(alias='credit_scorecard') }}

with scorecard as (
    select * from {{ ref('credit_scorecard') }}
),

bins as (
    select * from {{ ref('credit_scorecard_bins') }}
),

final as (
    select
        cast(scorecard.indicator as {{ crm_type_string() }}) as indicator,
        cast(scorecard.indicator_order as integer) as indicator_order,
        cast(scorecard.category as {{ crm_type_string() }}) as category,
        cast(scorecard.is_financial as boolean) as is_financial,
        cast(bins.bin_order as integer) as bin_order,
        cast(case when bins.lower_bound <= -999999999 then null else bins.lower_bound end
             as decimal(18, 6)) as lower_bound,
        cast(case when bins.upper_bound >= 999999999 then null else bins.upper_bound end
             as decimal(18, 6)) as upper_bound,
        cast(bins.points as decimal(6, 2)) as points,
        cast(scorecard.max_points as decimal(6, 2)) as max_points,
        cast(scorecard.fallback_points as decimal(6, 2)) as fallback_points,
        cast(scorecard.direction as {{ crm_type_string() }}) as direction,
        cast(scorecard.missing_when as {{ crm_type_string() }}) as missing_when
    from scorecard
    inner join bins on bins.indicator = scorecard.indicator
)

select * from final
