{#- The run's logical date, 'YYYY-MM-DD': var as_of when given (`dbt ... --vars`), else
    the environment variable CRM_AS_OF, which the pipeline's dbt stages set. The variable
    is read only while executing, never while parsing: dbt parses the project again from
    scratch whenever --vars or a variable read while parsing changes, so a date passed
    that way would cost every night's dbt stages a full parse (about 10 s each at any
    scale); read at run time, the stages reuse the last parse (dbt's partial parsing). -#}
{% macro crm_as_of() -%}
    {%- set given = var('as_of', none) -%}
    {%- if given is not none -%}{{ return(given | string) }}{%- endif -%}
    {%- if not execute -%}{{ return('2000-01-01') }}{%- endif -%}
    {{ return(env_var('CRM_AS_OF')) }}
{%- endmacro %}

{#- True while dbt only describes the project (`dbt docs generate`): the state lookups
    of the kept models and of the credit snapshot are skipped, and every model compiles
    as on a full build, which is also the SQL the docs should show. Those lookups scan the
    kept tables (max over 20M rows per table at scale L): cheap in DuckDB, but on
    PostgreSQL they made generating the docs take 40 s instead of 8. -#}
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

{#- Latest version of each key known at a cut-off, soft-deleted keys removed: versions
    that had reached the warehouse by `cutoff_date` (_visible_from) and were changed
    before `cutoff_end`. By default the cut-off is the run date; the credit snapshot
    models pass the end of the previous quarter, so later payments, returns and revised
    statements never change a published grade. No table alias: dbt's --empty mode
    replaces the relation with an aliased subquery. -#}
{% macro latest_as_of(relation, key, cutoff_date=none, cutoff_end=none) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ key }}
                order by updated_at desc, _loaded_at desc, _batch_id desc
            ) as _version_rank
        from {{ relation }}
        where _visible_from <= {{ cutoff_date or as_of_date() }}
          and updated_at < {{ cutoff_end or as_of_end() }}
    ) as versions
    where _version_rank = 1
      and not coalesce(is_deleted, false)
{%- endmacro %}

{#- Order amounts in the reporting currency: the one conversion rule (seed fx_rates) for
    every model that reads order versions. `orders` and `fx` are the aliases joined on
    currency; an unknown currency never gets here (gate 1 quarantines it). -#}
{% macro order_amounts_in_reporting_currency(orders, fx) -%}
        cast({{ orders }}.gross_amount * {{ fx }}.rate_to_reporting as decimal(18, 2)) as gross_amount,
        cast({{ orders }}.cost_amount * {{ fx }}.rate_to_reporting as decimal(18, 2)) as cost_amount,
        cast(coalesce({{ orders }}.paid_amount, 0) * {{ fx }}.rate_to_reporting as decimal(18, 2)) as paid_amount,
        cast(coalesce({{ orders }}.written_off_amount, 0) * {{ fx }}.rate_to_reporting as decimal(18, 2)) as written_off_amount
{%- endmacro %}
