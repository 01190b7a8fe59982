-- Owns the banding of the credit-grade distribution for the scorecard's stability index:
-- one row per customer and measure graded in this run's grade quarter or in the latest
-- graded quarter before it (int_credit_grade_history), with the measure's band. Measures:
-- total_score, in bands of var credit_psi_score_band_width points (the last band ends at
-- the scorecard's maximum, so a score of 100 is in the band 90-100), and each
-- indicator's points (band_from = band_to = the points). No rows before a second quarter
-- is graded. credit_scorecard_stability computes the index from it.
{%- set indicators = credit_indicator_names() %}
{%- set width = var('credit_psi_score_band_width') %}

with history as (
    select * from {{ ref('int_credit_grade_history') }}
),

scorecard as (
    select * from {{ ref('credit_scorecard') }}
),

previous_quarter as (
    select max(grade_quarter) as previous_grade_quarter
    from history
    where grade_quarter < {{ credit_grade_quarter() }}
),

two_quarters as (
    select
        history.*,
        history.grade_quarter = {{ credit_grade_quarter() }} as is_current
    from history
    inner join previous_quarter
        on history.grade_quarter in ({{ credit_grade_quarter() }}, previous_quarter.previous_grade_quarter)
    where previous_quarter.previous_grade_quarter is not null
),

-- the last band ends at the scorecard's maximum (a score of 100 is in the band 90-100)
top_score as (
    select sum(max_points) as max_score from scorecard
),

banded as (
    select
        two_quarters.customer_id,
        two_quarters.is_current,
        cast('total_score' as {{ crm_type_string() }}) as measure,
        cast(least(floor(two_quarters.total_score / {{ width }}) * {{ width }},
                   top_score.max_score - {{ width }}) as decimal(6, 2)) as band_from,
        cast(least(floor(two_quarters.total_score / {{ width }}) * {{ width }},
                   top_score.max_score - {{ width }}) + {{ width }} as decimal(6, 2)) as band_to
    from two_quarters
    cross join top_score
    {%- for name in indicators %}
    union all
    select
        customer_id,
        is_current,
        cast('{{ name }}' as {{ crm_type_string() }}) as measure,
        pts_{{ name }} as band_from,
        pts_{{ name }} as band_to
    from two_quarters
    {%- endfor %}
),

final as (
    select
        {{ credit_grade_quarter() }} as grade_quarter,
        cast(previous_quarter.previous_grade_quarter as date) as previous_grade_quarter,
        cast(banded.customer_id as bigint) as customer_id,
        cast(banded.is_current as boolean) as is_current,
        cast(banded.measure as {{ crm_type_string() }}) as measure,
        cast(banded.band_from as decimal(6, 2)) as band_from,
        cast(banded.band_to as decimal(6, 2)) as band_to
    from banded
    cross join previous_quarter
)

select * from final
