{#- Generic test: no two rows share the same combination of the given columns (the
    dbt_utils test of the same name, which cannot be installed here). Rows where any of
    the columns is null are covered by not_null tests on the columns themselves. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
