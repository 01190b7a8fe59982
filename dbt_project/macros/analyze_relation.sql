{#- Fresh statistics for a table dbt just built. PostgreSQL has none until autovacuum
    gets to it, and without them it plans the downstream joins as if the tables were
    empty, which makes them far slower. DuckDB keeps statistics as it writes. -#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch('analyze_relation', 'crm')(relation)) }}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    analyze {{ relation }}
{%- endmacro %}
