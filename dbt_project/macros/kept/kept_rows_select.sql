{#- The closing SELECT of a kept model: the rows of CTE `cte` with what the next run's
    state reads (kept_rows_state): the build's as_of, the newest load time in raw.orders
    and, for a model with a code version, that version. -#}
{% macro kept_rows_select(cte) -%}
select
    *,
    {{ as_of_date() }} as _built_as_of,
    (select max(_loaded_at) from {{ ref('stg_crm__orders') }}) as _raw_loaded_through
    {%- if kept_rows_options().code_version %},
    cast({{ kept_rows_code_version() }} as bigint) as _code_version
    {%- endif %}
from {{ cte }}
{%- endmacro %}
