{#- Models kept between runs: the latest version of each order (stg_crm__orders_latest),
    int_orders and the per-customer models derived from it keep their rows and recompute
    only what changed, instead of ranking every version in raw every night.

    Each kept model remembers, in every row, the as_of it was built for (_built_as_of) and
    the newest _loaded_at in raw at that build (_raw_loaded_through). A version that the
    run's as_of may read (latest_as_of's rule) but the last build could not (it was
    visible later, changed later, or loaded after that build) marks its order as
    changed; so does an order date the last build's as_of had not reached. The model
    stg_crm__orders_changes finds these once per run, relative to the oldest state of the
    kept models (a superset of what each needs; recomputing a key is idempotent). A run
    deletes the changed keys and appends them computed afresh, in one transaction. A run
    for an earlier as_of than the last build (a backfill), a missing or empty table, a
    row computed by other code (kept models with a code version) or --full-refresh
    computes every key. Kept models carry the tag 'kept_orders'. -#}

{% macro latest_incremental_state(code_version=none) -%}
    {#- with code_version (kept models, below): also 'full' when a stored row was computed
        by other code; read in the same scan of the table -#}
    {%- if not execute or this is none or not is_incremental() or flags.FULL_REFRESH or crm_describing_only() -%}
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
    {%- if since is none or loaded is none or since > crm_as_of() -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- if code_version is not none and (result.rows[0][2] != code_version or result.rows[0][3] != code_version) -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set since_end = (modules.datetime.date.fromisoformat(since) + modules.datetime.timedelta(days=1)).isoformat() -%}
    {{ return({'mode': 'delta', 'since': since, 'since_end': since_end, 'loaded': loaded}) }}
{%- endmacro %}

{#- The state of the oldest kept build a run may continue from (none: 'full'): the
    smallest _built_as_of and _raw_loaded_through over the kept models' tables whose
    rows were built for an as_of no later than the run's. Read by stg_crm__orders_changes
    before any kept model is rebuilt. -#}
{% macro kept_changes_state() -%}
    {%- if not execute or 'nodes' not in graph or crm_describing_only() -%}{{ return({'mode': 'full'}) }}{%- endif -%}
    {%- set built, loaded_through = [], [] -%}
    {%- for node in graph.nodes.values()
            if node.resource_type == 'model' and 'kept_orders' in node.tags and not flags.FULL_REFRESH -%}
        {%- set relation = adapter.get_relation(database=node.database, schema=node.schema,
                                                identifier=node.alias) -%}
        {%- if relation is not none -%}
            {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
            {%- if '_built_as_of' in columns and '_raw_loaded_through' in columns -%}
                {%- set row = run_query("select cast(max(_built_as_of) as varchar), "
                                        ~ "cast(max(_raw_loaded_through) as varchar) from " ~ relation).rows[0] -%}
                {%- if row[0] is not none and row[1] is not none and row[0] <= crm_as_of() -%}
                    {%- do built.append(row[0]) -%}
                    {%- do loaded_through.append(row[1]) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if built | length == 0 -%}{{ return({'mode': 'full'}) }}{%- endif -%}
    {%- set since = built | min -%}
    {%- set loaded = loaded_through | min -%}
    {%- set since_end = (modules.datetime.date.fromisoformat(since) + modules.datetime.timedelta(days=1)).isoformat() -%}
    {{ return({'mode': 'delta', 'since': since, 'since_end': since_end, 'loaded': loaded}) }}
{%- endmacro %}

{#- The model: the latest version of the changed orders (all orders on a full build). -#}
{% macro latest_incremental_select(relation, key, columns) -%}
    {%- set state = latest_incremental_state() -%}
with versions as (
    select * from {{ relation }}
    {%- if state.mode == 'delta' %}
    where {{ kept_rows_changed('orders') }}
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
{% macro latest_incremental_reset() -%}
    {%- set state = latest_incremental_state() -%}
    {%- if not execute or this is none or not is_incremental() -%}
        select 1
    {%- elif state.mode == 'full' -%}
        {{ crm_empty_table(this) }}
    {%- else -%}
        delete from {{ this }} where {{ kept_rows_changed('orders') }}
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

{#- What a kept model recomputes on a delta run (`state`: its kept_rows_state), by grain:
    the orders of stg_crm__orders_changes ('orders'), their customers ('customers'), or
    those and the customers who bought on a day that left or entered one of the trailing
    windows (macros/customer_windows.sql) since the last build ('window_customers').
    A model that calls it declares `-- depends_on: {{ ref('stg_crm__orders_changes') }}`. -#}
{% macro kept_rows_changed(grain, state=none) -%}
    {%- if grain == 'orders' -%}
    order_id in (select order_id from {{ ref('stg_crm__orders_changes') }})
    {%- elif grain == 'customers' -%}
    customer_id in (select customer_id from {{ ref('stg_crm__orders_changes') }})
    {%- elif grain == 'window_customers' -%}
    customer_id in (
        select customer_id from {{ ref('stg_crm__orders_changes') }}
        union
        select customer_id from {{ ref('int_orders') }}
        where is_purchase
          and {{ customer_window_moved_days(modules.datetime.date.fromisoformat(state.since),
                                            modules.datetime.date.fromisoformat(crm_as_of())) }}
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
