-- Owns the credit-grade history the monitoring marts read: every customer's grade of every
-- graded quarter, one row per (customer_id, grade_quarter). The quarters before this
-- run's grade quarter come from published.customer_credit_grades, written by the publish
-- step (never recomputed: a quarter's grade is not changed by later data); this run's
-- quarter comes from customer_credit_grades. Before the first publish the history is
-- this run's quarter alone. The grade row's points are kept for the stability index.
{%- set published = none %}
{%- if execute %}
    {%- set published = adapter.get_relation(
        database=target.database, schema='published', identifier='customer_credit_grades') %}
{%- endif %}
{%- set indicators = credit_indicator_names() %}

with current_quarter as (
    select * from {{ ref('customer_credit_grades') }}
),

{% if published is not none -%}
earlier_quarters as (
    select * from {{ published }}
    where cast(grade_quarter as date) < {{ credit_grade_quarter() }}
),
{%- else -%}
earlier_quarters as (
    select * from current_quarter
    where 1 = 0
),
{%- endif %}

graded as (
    {%- for source in ['current_quarter', 'earlier_quarters'] %}
    select
        cast(customer_id as bigint) as customer_id,
        cast(grade_quarter as date) as grade_quarter,
        cast(credit_grade as varchar(8)) as credit_grade,
        cast(total_score as decimal(6, 2)) as total_score,
        {%- for name in indicators %}
        cast(pts_{{ name }} as decimal(6, 2)) as pts_{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ source }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select * from graded
)

select * from final
