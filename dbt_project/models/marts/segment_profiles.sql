-- Owns the profile of each segment as of the run date: one row per segment
-- named in the seed segment_rules, including segments with no customers this run (so
-- an empty segment is visible and flagged as undersized).
with segments as (
    select * from {{ ref('customer_segments') }}
),

segment_names as (
    select distinct segment from {{ ref('segment_rules') }}
),

totals as (
    select
        count(*) as customers,
        sum(trailing_12m_revenue) as revenue
    from segments
),

per_segment as (
    select
        segment,
        count(*) as customers,
        sum(trailing_12m_revenue) as revenue,
        sum(historical_value) as historical_value,
        sum(clv_12m) as clv_12m_total,
        count(clv_12m) as clv_customers,
        sum(case when credit_grade = 'AAA' then 1 else 0 end) as grade_aaa,
        sum(case when credit_grade = 'AA' then 1 else 0 end) as grade_aa,
        sum(case when credit_grade = 'A' then 1 else 0 end) as grade_a,
        sum(case when credit_grade = 'B' then 1 else 0 end) as grade_b,
        sum(case when credit_grade = 'C' then 1 else 0 end) as grade_c,
        sum(case when credit_grade is null then 1 else 0 end) as grade_none
    from segments
    group by segment
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(segment_names.segment as {{ crm_type_string() }}) as segment,
        cast(coalesce(per_segment.customers, 0) as integer) as customers,
        cast(
            case when totals.customers > 0
                then cast(coalesce(per_segment.customers, 0) as numeric(18, 6)) / totals.customers
            end as numeric(18, 6)
        ) as customer_share,
        cast(coalesce(per_segment.revenue, 0) as numeric(18, 2)) as revenue,
        cast(
            case when totals.revenue > 0 then coalesce(per_segment.revenue, 0) / totals.revenue end
            as numeric(18, 6)
        ) as revenue_share,
        case when per_segment.customers > 0
            then {{ value_money_ratio('per_segment.historical_value', 'per_segment.customers') }}
        end as avg_historical_value,
        -- mean 12-month CLV over the segment's customers with a CLV (buyers, when the
        -- fit of this as_of is ok); null when none has one
        case when per_segment.clv_customers > 0
            then {{ value_money_ratio('per_segment.clv_12m_total', 'per_segment.clv_customers') }}
        end as avg_clv,
        cast(coalesce(per_segment.grade_aaa, 0) as integer) as grade_aaa,
        cast(coalesce(per_segment.grade_aa, 0) as integer) as grade_aa,
        cast(coalesce(per_segment.grade_a, 0) as integer) as grade_a,
        cast(coalesce(per_segment.grade_b, 0) as integer) as grade_b,
        cast(coalesce(per_segment.grade_c, 0) as integer) as grade_c,
        cast(coalesce(per_segment.grade_none, 0) as integer) as grade_none,
        cast(coalesce(per_segment.customers, 0) < {{ var('segment_min_size') }} as boolean) as is_undersized
    from segment_names
    cross join totals
    left join per_segment on segment_names.segment = per_segment.segment
)

select * from final
