{#- Kept rows: the models built from the order history keep their rows between runs and
    recompute only what changed, instead of ranking every version in raw every night.
    They are int_orders_latest (the latest version of each order), int_orders and the
    per-customer models derived from it; each carries the tag 'kept_rows'.

    Every row remembers the as_of it was built for (_built_as_of) and the newest
    _loaded_at in raw.orders at that build (_raw_loaded_through); a model with a code
    version also stores the version of the code it was computed with (_code_version). A
    version that the run's as_of may read (latest_as_of's rule) but the last build could
    not (it was visible later, changed later, or loaded after that build) marks its order
    as changed; so does an order date the last build's as_of had not reached.
    int_orders_changes finds these orders once per run, relative to the oldest state of
    the kept models (a superset of what each needs; recomputing a key is idempotent). A
    run deletes the changed keys and appends them computed afresh, in one transaction. A
    run for an earlier as_of than the last build (a backfill), a missing or empty table,
    a row computed by other code or --full-refresh computes every key.

    A kept model has one config line and its business CTEs:

        {{ config(**kept_rows_config('customers')) }}
        with purchases as (
            select * from {{ ref('int_orders') }}
            where is_purchase and {{ kept_rows_changed() }}
        ),
        ...
        {{ kept_rows_select('final') }}
-#}

{#- The config of a kept model. `grain`: what a run recomputes (see kept_rows_keys):
    'orders', 'customers' or 'window_customers'. `settings`: the settings the model reads,
    part of its code version. `code_version`: false for a model whose rows do not depend
    on the code (int_orders_latest keeps versions as extracted). `indexes`: column lists
    indexed on PostgreSQL (crm_indexes). -#}
{% macro kept_rows_config(grain, settings='', code_version=true, indexes=[]) -%}
    {%- set post_hook = [] -%}
    {%- if indexes -%}
        {%- do post_hook.append("{{ crm_indexes(this, " ~ indexes ~ ") }}") -%}
    {%- endif -%}
    {%- do post_hook.append("{{ analyze_relation(this) }}") -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'sync_all_columns',
        'tags': ['kept_rows'],
        'meta': {'kept_rows': {'grain': grain, 'settings': settings, 'code_version': code_version}},
        'pre_hook': "{{ kept_rows_reset() }}",
        'post_hook': post_hook,
    }) }}
{%- endmacro %}

{#- The kept_rows options of the model being built (its config's meta). -#}
{% macro kept_rows_options() -%}
    {%- set meta = config.get('meta') if execute else none -%}
    {%- set options = (meta or {}).get('kept_rows') or {} -%}
    {{ return({'grain': options.get('grain', 'orders'), 'settings': options.get('settings', ''),
               'code_version': options.get('code_version', true)}) }}
{%- endmacro %}
