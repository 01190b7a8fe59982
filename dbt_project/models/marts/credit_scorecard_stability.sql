-- Owns the scorecard's population stability: for this run's grade quarter against the
-- latest graded quarter before it (int_credit_grade_history), the population stability
-- index (PSI) of the total score, in bands of var credit_psi_score_band_width points, and
-- of each indicator's points. One row per (measure, band) seen in either quarter, with
-- both quarters' shares and the band's part of the index; psi and status (stable below
-- var credit_psi_watch, watch up to var credit_psi_shift, shift above) repeat on every
-- row of the measure. PSI = sum over bands of (current share - previous share) x
-- ln(current share / previous share), a share of 0 counted as var credit_psi_min_share.
-- No rows before a second quarter is graded. Drill-down: the customers of a band are
-- those of customer_credit_grades in that quarter with total_score (or pts_<indicator>)
-- in [band_from, band_to).
{%- set floor_share = var('credit_psi_min_share') %}

with bands as (
    select * from {{ ref('int_credit_stability_bands') }}
),

counts as (
    select
        grade_quarter,
        previous_grade_quarter,
        measure,
        band_from,
        band_to,
        sum(case when is_current then 1 else 0 end) as current_customers,
        sum(case when is_current then 0 else 1 end) as previous_customers
    from bands
    group by grade_quarter, previous_grade_quarter, measure, band_from, band_to
),

shares as (
    select
        counts.*,
        cast(current_customers as {{ crm_type_double() }})
            / nullif(sum(current_customers) over (partition by measure), 0) as current_share,
        cast(previous_customers as {{ crm_type_double() }})
            / nullif(sum(previous_customers) over (partition by measure), 0) as previous_share
    from counts
),

contributions as (
    select
        shares.*,
        (greatest(coalesce(current_share, 0), {{ floor_share }}) - greatest(coalesce(previous_share, 0), {{ floor_share }}))
            * ln(greatest(coalesce(current_share, 0), {{ floor_share }})
                 / greatest(coalesce(previous_share, 0), {{ floor_share }})) as psi_part
    from shares
),

indexed as (
    select
        contributions.*,
        sum(psi_part) over (partition by measure) as psi
    from contributions
),

final as (
    select
        cast(indexed.grade_quarter as date) as grade_quarter,
        cast(indexed.previous_grade_quarter as date) as previous_grade_quarter,
        cast(indexed.measure as {{ crm_type_string() }}) as measure,
        cast(indexed.band_from as decimal(6, 2)) as band_from,
        cast(indexed.band_to as decimal(6, 2)) as band_to,
        cast(indexed.current_customers as integer) as current_customers,
        cast(indexed.previous_customers as integer) as previous_customers,
        cast(coalesce(indexed.current_share, 0) as numeric(18, 6)) as current_share,
        cast(coalesce(indexed.previous_share, 0) as numeric(18, 6)) as previous_share,
        cast(indexed.psi_part as numeric(18, 6)) as psi_part,
        cast(indexed.psi as numeric(18, 6)) as psi,
        cast(case
            when indexed.psi > {{ var('credit_psi_shift') }} then 'shift'
            when indexed.psi >= {{ var('credit_psi_watch') }} then 'watch'
            else 'stable'
        end as {{ crm_type_string() }}) as status
    from indexed
)

select * from final
