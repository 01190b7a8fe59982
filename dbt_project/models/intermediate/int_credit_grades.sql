-- Owns the credit grade of every customer for the quarter containing the run date
-- (grade_quarter), computed from data through the last day of the previous quarter: the
-- indicator points summed per customer, by category and financial flag, and the grade of
-- seed credit_grade_cutoffs for the total, and which indicators scored an end bin because
-- their value lay beyond the scorecard's bins (beyond_range_indicators). The mart
-- customer_credit_grades publishes its graded columns.
{#- Incremental per quarter like the rest of the credit snapshot (macros/credit_snapshot.sql):
    every run inside a quarter grades from the same inputs, so the rows are reused. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='sync_all_columns',
          pre_hook="{{ credit_snapshot_reset(ref('int_credit_indicators')) }}") }}
{%- set indicators = credit_indicator_names() %}
{%- set categories = credit_category_names() %}
{%- set inputs = credit_indicator_inputs() %}

with indicators as (
    select * from {{ ref('int_credit_indicators') }}
),

points as (
    select * from {{ ref('int_credit_indicator_points') }}
),

cutoffs as (
    select * from {{ ref('credit_grade_cutoffs') }}
),

customer_points as (
    select
        customer_id,
        {%- for name in indicators %}
        sum(case when indicator = '{{ name }}' then points else 0 end) as pts_{{ name }},
        max(case when indicator = '{{ name }}' and is_fallback then 1 else 0 end) as miss_{{ name }},
        max(case when indicator = '{{ name }}' and is_beyond_range then 1 else 0 end) as beyond_{{ name }},
        {%- endfor %}
        {%- for cat in categories %}
        sum(case when category = '{{ cat }}' then points else 0 end) as cat_{{ cat }}_points,
        {%- endfor %}
        sum(case when is_financial then points else 0 end) as financial_points,
        sum(case when not is_financial then points else 0 end) as non_financial_points,
        sum(case when is_fallback then 1 else 0 end) as missing_indicator_count,
        sum(case when is_beyond_range then 1 else 0 end) as beyond_range_count,
        sum(points) as total_score
    from points
    group by customer_id
),

graded as (
    select
        customer_points.customer_id,
        cutoffs.credit_grade,
        row_number() over (
            partition by customer_points.customer_id order by cutoffs.min_score desc
        ) as grade_rank
    from customer_points
    inner join cutoffs on customer_points.total_score >= cutoffs.min_score
),

final as (
    select
        cast(indicators.customer_id as bigint) as customer_id,
        cast(indicators.grade_quarter as date) as grade_quarter,
        cast(indicators.data_through as date) as data_through,
        cast(customer_points.total_score as decimal(6, 2)) as total_score,
        cast(graded.credit_grade as varchar(8)) as credit_grade,
        cast(customer_points.financial_points as decimal(6, 2)) as financial_points,
        cast(customer_points.non_financial_points as decimal(6, 2)) as non_financial_points,
        {%- for cat in categories %}
        cast(customer_points.cat_{{ cat }}_points as decimal(6, 2)) as cat_{{ cat }}_points,
        {%- endfor %}
        cast(indicators.has_financial_statements as boolean) as has_financial_statements,
        cast(indicators.statement_period_end as date) as statement_period_end,
        cast(customer_points.missing_indicator_count as integer) as missing_indicator_count,
        -- comma-separated, in scorecard order; '' when nothing was missing
        cast(substr(
            {%- for name in indicators %}
            case when customer_points.miss_{{ name }} = 1 then ',{{ name }}' else '' end{{ ' ||' if not loop.last }}
            {%- endfor %},
            2
        ) as varchar(1000)) as missing_indicators,
        cast(customer_points.beyond_range_count as integer) as beyond_range_count,
        -- indicators whose value lay outside the scorecard's bins (scored at the end bin)
        cast(substr(
            {%- for name in indicators %}
            case when customer_points.beyond_{{ name }} = 1 then ',{{ name }}' else '' end{{ ' ||' if not loop.last }}
            {%- endfor %},
            2
        ) as varchar(1000)) as beyond_range_indicators,
        {%- for name in indicators %}
        cast(indicators.ind_{{ name }} as decimal(18, 4)) as ind_{{ name }},
        cast(customer_points.pts_{{ name }} as decimal(6, 2)) as pts_{{ name }},
        {%- endfor %}
        -- some input of the grade was read from a reconstructed version (first night)
        {%- set all_inputs = credit_input_names() %}
        ({% for input in all_inputs %}indicators.reconstructed_{{ input }}{{ ' or ' if not loop.last }}{% endfor %})
            as is_reconstructed,
        -- indicators resting on such data, comma-separated in scorecard order ('' when none)
        cast(substr(
            {%- for name in indicators %}
            case when {% for input in inputs[name] %}indicators.reconstructed_{{ input }}{{ ' or ' if not loop.last }}{% endfor %}
                then ',{{ name }}' else '' end{{ ' ||' if not loop.last }}
            {%- endfor %},
            2
        ) as varchar(1000)) as reconstructed_indicators
    from indicators
    inner join customer_points on indicators.customer_id = customer_points.customer_id
    inner join graded
        on indicators.customer_id = graded.customer_id
        and graded.grade_rank = 1
)

{{ credit_snapshot_rows('final', ref('int_credit_indicators')) }}
