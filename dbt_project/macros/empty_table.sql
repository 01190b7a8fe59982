{#- Empty a kept table before a model computes all its rows again. DuckDB cannot alter a
    table (dbt adds new columns after the pre-hooks) in the transaction that deleted its
    rows, so there the table is replaced by an empty copy, which is also instant;
    PostgreSQL truncates. -#}
{% macro crm_empty_table(relation) -%}
    {{ return(adapter.dispatch('crm_empty_table', 'crm')(relation)) }}
{%- endmacro %}

{% macro default__crm_empty_table(relation) -%}
    truncate table {{ relation }}
{%- endmacro %}

{% macro duckdb__crm_empty_table(relation) -%}
    create or replace table {{ relation }} as select * from {{ relation }} limit 0
{%- endmacro %}
