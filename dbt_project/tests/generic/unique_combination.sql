{#- Generic test: no two rows share the same combination of the given columns (the
    dbt_utils test of the same name, which cannot be installed here). Rows where any of
    the columns is null are covered by not_null tests on the columns themselves.

    On PostgreSQL, a model that keeps a unique index on exactly these columns (macro
    crm_unique_index) cannot hold two such rows: the index refused them when they were
    written. The test then reads the catalog instead of grouping every kept row again
    every night. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
{%- set enforced = crm_has_unique_index(model, combination_of_columns) %}
{%- if enforced %}
-- enforced by a unique index of {{ model }} on ({{ combination_of_columns | join(', ') }})
{%- endif %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
{%- if enforced %}
where 1 = 0
{%- endif %}
group by {{ combination_of_columns | join(', ') }}
{%- if not enforced %}
having count(*) > 1
{%- endif %}
{% endtest %}
