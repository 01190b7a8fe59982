{#- Secondary indexes of a model's table on PostgreSQL, for the lookups of the models that
    read it (int_complaint_enriched finds each complaint's orders through them instead of
    joining all orders). Created when missing, on every run, so a table built before an
    index was added gets it as well; a no-op when it exists. DuckDB keeps no secondary
    indexes: it scans and hashes, and an index would only slow its writes. -#}
{% macro crm_indexes(relation, column_lists) -%}
    {{ return(adapter.dispatch('crm_indexes', 'crm')(relation, column_lists)) }}
{%- endmacro %}

{% macro default__crm_indexes(relation, column_lists) -%}
{%- endmacro %}

{% macro postgres__crm_indexes(relation, column_lists) -%}
    {%- for columns in column_lists %}
    create index if not exists {{ relation.identifier ~ '__' ~ columns | join('__') }}
        on {{ relation }} ({{ columns | join(', ') }});
    {%- endfor %}
{%- endmacro %}

{#- A source's table as a relation, also under `dbt build --empty` (where source() stands
    for an empty subquery, which cannot be indexed). -#}
{% macro crm_source_relation(source_name, table_name) -%}
    {%- if not execute or 'sources' not in graph -%}{{ return(source(source_name, table_name)) }}{%- endif -%}
    {%- set node = graph.sources['source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name] -%}
    {{ return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.identifier)) }}
{%- endmacro %}
