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

{#- A unique index of a model's table on PostgreSQL: the table then refuses a second row
    with the same values of `columns` (the build fails, in its transaction, naming the
    key), and the unique_combination_of_columns test on those columns reads the catalog
    instead of grouping every row (crm_has_unique_index). DuckDB: nothing; the test groups. -#}
{% macro crm_unique_index(relation, columns) -%}
    {{ return(adapter.dispatch('crm_unique_index', 'crm')(relation, columns)) }}
{%- endmacro %}

{% macro default__crm_unique_index(relation, columns) -%}
{%- endmacro %}

{% macro postgres__crm_unique_index(relation, columns) -%}
    create unique index if not exists {{ relation.identifier ~ '__' ~ columns | join('__') ~ '__key' }}
        on {{ relation }} ({{ columns | join(', ') }})
{%- endmacro %}

{#- Whether `relation` has a valid unique index on exactly `columns` (in any order), with
    no predicate or expression. Only on PostgreSQL, only when executing. -#}
{% macro crm_has_unique_index(relation, columns) -%}
    {{ return(adapter.dispatch('crm_has_unique_index', 'crm')(relation, columns)) }}
{%- endmacro %}

{% macro default__crm_has_unique_index(relation, columns) -%}
    {{ return(false) }}
{%- endmacro %}

{% macro postgres__crm_has_unique_index(relation, columns) -%}
    {%- if not execute or relation.schema is none or relation.identifier is none -%}{{ return(false) }}{%- endif -%}
    {%- set wanted = columns | map('lower') | sort | join(',') -%}
    {%- set found = run_query(
        "select string_agg(a.attname, ',' order by a.attname) "
        ~ "from pg_index i "
        ~ "join pg_class t on t.oid = i.indrelid "
        ~ "join pg_namespace n on n.oid = t.relnamespace "
        ~ "join pg_attribute a on a.attrelid = t.oid and a.attnum = any(i.indkey) "
        ~ "where i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null "
        ~ "and i.indnkeyatts = i.indnatts "
        ~ "and n.nspname = '" ~ relation.schema ~ "' and t.relname = '" ~ relation.identifier ~ "' "
        ~ "group by i.indexrelid, i.indnatts having count(*) = i.indnatts") -%}
    {%- for row in found.rows if row[0] == wanted -%}
        {{ return(true) }}
    {%- endfor -%}
    {{ return(false) }}
{%- endmacro %}
