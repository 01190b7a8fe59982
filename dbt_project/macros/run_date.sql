{#- The run's logical date, 'YYYY-MM-DD': var as_of when given (`dbt ... --vars`), else
    the environment variable CRM_AS_OF, which the pipeline's dbt stages set. The variable
    is read only while executing, never while parsing: dbt parses the project again from
    scratch whenever --vars or a variable read while parsing changes, so a date passed
    that way would make every night's dbt stages parse the whole project again; read at
    run time, the stages reuse the last parse (dbt's partial parsing). -#}
{% macro crm_as_of() -%}
    {%- set given = var('as_of', none) -%}
    {%- if given is not none -%}{{ return(given | string) }}{%- endif -%}
    {%- if not execute -%}{{ return('2000-01-01') }}{%- endif -%}
    {{ return(env_var('CRM_AS_OF')) }}
{%- endmacro %}

{#- True while dbt only describes the project (`dbt docs generate`): the state lookups
    of the kept models and of the credit snapshot are skipped, and every model compiles
    as on a full build, which is also the SQL the docs should show. Those lookups scan the
    kept tables: cheap in DuckDB, but on PostgreSQL they made generating the docs several
    times slower. -#}
{% macro crm_describing_only() -%}
    {{ return(execute and flags.WHICH == 'generate') }}
{%- endmacro %}

{#- The run's logical date and the first instant after it. A row version belongs to
    as_of = D when it was changed before D + 1 day and it had reached the warehouse by D
    (`_visible_from`, set by extraction). Computed in Jinja so the SQL is portable. -#}
{% macro as_of_date() -%}
    cast('{{ crm_as_of() }}' as date)
{%- endmacro %}

{% macro as_of_end() -%}
    {%- set d = modules.datetime.date.fromisoformat(crm_as_of()) + modules.datetime.timedelta(days=1) -%}
    cast('{{ d.isoformat() }}' as timestamp)
{%- endmacro %}
