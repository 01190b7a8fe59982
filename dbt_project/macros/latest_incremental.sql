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

{% macro latest_incremental_state(code_version=none) -%}
    {#- with code_version (kept models, below): also 'full' when a stored row was computed
        by other code; read in the same scan of the table -#}
    {%- if not execute or this is none or not is_incremental() or flags.FULL_REFRESH -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- set needed = ['_built_as_of', '_raw_loaded_through'] + ([] if code_version is none else ['_code_version']) -%}
    {%- for column in needed if column not in columns -%}
        {{ return({'mode': 'full'}) }}
    {%- endfor -%}
    {%- set result = run_query("select cast(max(_built_as_of) as varchar), cast(max(_raw_loaded_through) as varchar)"
                               ~ ("" if code_version is none else ", min(_code_version), max(_code_version)")
                               ~ " from " ~ this) -%}
    {%- set since, loaded = result.rows[0][0], result.rows[0][1] -%}
    {%- if since is none or loaded is none or since > (var('as_of') | string) -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- if code_version is not none and (result.rows[0][2] != code_version or result.rows[0][3] != code_version) -%}
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
        {{ crm_empty_table(this) }}
    {%- else -%}
        delete from {{ this }} where {{ key }} in ({{ latest_changed_keys(relation, key, state) }})
    {%- endif -%}
{%- endmacro %}

{#- Models derived from the latest orders and kept between runs the same way (int_orders):
    besides _built_as_of and _raw_loaded_through, each row stores the code version it was
    computed with (upstream_code_version); a run with another version computes every row. -#}

{#- A number for the code this model is computed from: the checksums of the model and of
    every model and seed upstream of it, var macros_version (the md5 of macros/, which
    the pipeline passes) and `extra` (the settings the model reads). 0 at parse time and in unit tests (their graph is empty). -#}
{% macro upstream_code_version(extra='') -%}
    {%- if not execute or 'nodes' not in graph or model.unique_id not in graph.nodes -%}{{ return(0) }}{%- endif -%}
    {%- set seen = [] -%}
    {%- set todo = [model.unique_id] -%}
    {#- a breadth-first walk up depends_on (Jinja has no while: at most one pass per node) -#}
    {%- for _ in graph.nodes -%}
        {%- for uid in todo if uid not in seen and uid in graph.nodes -%}
            {%- do seen.append(uid) -%}
            {%- for parent in graph.nodes[uid].depends_on.nodes if parent not in seen -%}
                {%- do todo.append(parent) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set parts = [] -%}
    {%- for uid in seen | sort -%}
        {%- do parts.append(uid ~ '=' ~ graph.nodes[uid].checksum.checksum) -%}
    {%- endfor -%}
    {%- do parts.append('macros=' ~ var('macros_version', '')) -%}
    {%- do parts.append(extra) -%}
    {{ return(local_md5(parts | join('\n'))[:15] | int(0, 16)) }}
{%- endmacro %}

{#- latest_incremental_state, made 'full' when a stored row has another code version. -#}
{% macro kept_rows_state(code_version) -%}
    {{ return(latest_incremental_state(code_version)) }}
{%- endmacro %}

{#- The closing SELECT of a kept model: the rows of CTE `cte` with what the next run's
    state reads (the build's as_of, the newest load time in raw.orders, the code version). -#}
{% macro kept_rows_select(cte, code_version) -%}
select
    *,
    {{ as_of_date() }} as _built_as_of,
    (select max(_loaded_at) from {{ source('raw', 'orders') }}) as _raw_loaded_through,
    cast({{ code_version }} as bigint) as _code_version
from {{ cte }}
{%- endmacro %}

{#- What a kept model recomputes on a delta run, by grain. 'orders': the orders with a
    changed version, and those whose order date the last build's as_of did not reach yet.
    'customers': the customers of those orders (of any of their versions). -#}
{% macro kept_rows_changed(grain, state) -%}
    {%- if grain == 'orders' -%}
    order_id in ({{ latest_changed_keys(source('raw', 'orders'), 'order_id', state) }})
    or order_date > cast('{{ state.since }}' as date)
    {%- elif grain == 'customers' -%}
    customer_id in (
        select customer_id from {{ source('raw', 'orders') }}
        where order_id in ({{ latest_changed_keys(source('raw', 'orders'), 'order_id', state) }})
        union
        select customer_id from {{ ref('int_orders') }}
        where order_date > cast('{{ state.since }}' as date)
    )
    {%- else -%}
    {{ exceptions.raise_compiler_error("kept_rows_changed: unknown grain " ~ grain) }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of a kept model: delete what its SELECT appends again. -#}
{% macro kept_rows_reset(grain, extra='') -%}
    {%- if not execute or this is none or not is_incremental() -%}
        select 1
    {%- else -%}
        {%- set state = kept_rows_state(upstream_code_version(extra)) -%}
        {%- if state.mode == 'full' -%}
        {{ crm_empty_table(this) }}
        {%- else -%}
        delete from {{ this }} where {{ kept_rows_changed(grain, state) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
