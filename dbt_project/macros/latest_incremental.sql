{#- The latest version of each key, kept up to date from new batches instead of ranking
    every version in raw every night (used by stg_crm__orders_latest).

    The model is incremental and remembers, in every row, the as_of it was built for
    (_built_as_of) and the newest _loaded_at in raw at that build (_raw_loaded_through).
    A version that the run's as_of may read (latest_as_of's rule) but the last build could
    not (it was visible later, changed later, or loaded after that build) marks its key
    as changed. A run deletes the changed keys and appends their latest version computed
    from all their versions in raw (none when it is soft-deleted), in one transaction.
    A run for an earlier as_of than the last build (a backfill), a missing or empty table,
    or --full-refresh computes every key. -#}

{% macro latest_incremental_state() -%}
    {%- if not execute or this is none or not is_incremental() or flags.FULL_REFRESH -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- if '_built_as_of' not in columns or '_raw_loaded_through' not in columns -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set result = run_query("select cast(max(_built_as_of) as varchar), cast(max(_raw_loaded_through) as varchar) from " ~ this) -%}
    {%- set since, loaded = result.rows[0][0], result.rows[0][1] -%}
    {%- if since is none or loaded is none or since > (var('as_of') | string) -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set since_end = (modules.datetime.date.fromisoformat(since) + modules.datetime.timedelta(days=1)).isoformat() -%}
    {{ return({'mode': 'delta', 'since': since, 'since_end': since_end, 'loaded': loaded}) }}
{%- endmacro %}

{#- Keys with a version the run may read that the last build could not. -#}
{% macro latest_changed_keys(relation, key, state) -%}
    select distinct {{ key }}
    from {{ relation }}
    where _visible_from <= {{ as_of_date() }}
      and updated_at < {{ as_of_end() }}
      and not (
          _visible_from <= cast('{{ state.since }}' as date)
          and updated_at < cast('{{ state.since_end }}' as timestamp)
          and _loaded_at <= cast('{{ state.loaded }}' as timestamp)
      )
{%- endmacro %}

{#- The model: the latest version of the changed keys (all keys on a full build). -#}
{% macro latest_incremental_select(relation, key, columns) -%}
    {%- set state = latest_incremental_state() -%}
with versions as (
    select * from {{ relation }}
    {%- if state.mode == 'delta' %}
    where {{ key }} in ({{ latest_changed_keys(relation, key, state) }})
    {%- endif %}
),

latest as (
    {{ latest_as_of('versions', key) }}
)

select
    {%- for c in columns %}
    {{ c }},
    {%- endfor %}
    {{ as_of_date() }} as _built_as_of,
    (select max(_loaded_at) from {{ relation }}) as _raw_loaded_through
from latest
{%- endmacro %}

{#- The pre-hook: delete what the model's SELECT appends again. -#}
{% macro latest_incremental_reset(relation, key) -%}
    {%- set state = latest_incremental_state() -%}
    {%- if not execute or this is none or not is_incremental() -%}
        select 1
    {%- elif state.mode == 'full' -%}
        delete from {{ this }}
    {%- else -%}
        delete from {{ this }} where {{ key }} in ({{ latest_changed_keys(relation, key, state) }})
    {%- endif -%}
{%- endmacro %}
