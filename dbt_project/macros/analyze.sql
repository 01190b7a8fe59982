{#- Fresh statistics for a table dbt just built. PostgreSQL has none until autovacuum
    gets to it, and without them it plans the downstream joins as if the tables were
    empty (minutes instead of seconds). DuckDB keeps statistics as it writes. -#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch('analyze_relation', 'crm')(relation)) }}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    analyze {{ relation }}
{%- endmacro %}

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
