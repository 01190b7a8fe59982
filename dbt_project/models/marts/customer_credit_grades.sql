-- Credit grade of every customer for the quarter containing the run date (grade_quarter),
-- computed from data through the last day of the previous quarter, so every run inside
-- the quarter publishes identical rows; the publish step appends them to history keyed by
-- grade_quarter. Each indicator's value and points are carried so a credit officer can see
-- why a customer has its grade. The grading itself is int_credit_grades (kept for the
-- quarter); this mart publishes its columns, the indicator values rounded to four
-- decimals for display (their points come from the exact values).
with grades as (
    select * from {{ ref('int_credit_grades') }}
),

final as (
    select
        {%- for column in credit_grade_columns() %}
        {#- indicators are scored on their exact values; the row shows them to four decimals #}
        {% if column.startswith('ind_') -%}
        cast({{ column }} as decimal(18, 4)) as {{ column }}
        {%- else -%}
        {{ column }}
        {%- endif %}{{ ',' if not loop.last }}
        {%- endfor %}
    from grades
)

select * from final
