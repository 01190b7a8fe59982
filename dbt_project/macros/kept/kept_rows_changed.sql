{#- The condition a kept model's SELECT puts on its input: the keys its run recomputes
    (kept_rows_keys) on a delta run, `true` when it computes every row. -#}
{% macro kept_rows_changed() -%}
    {#- at parse time this registers the dependency on int_orders_changes, which the delta
        condition reads -#}
    {%- if not execute -%}{%- do ref('int_orders_changes') -%}{%- endif -%}
    {%- set state = kept_rows_state() -%}
    {%- if state.mode == 'full' -%}
    true
    {%- else -%}
    {{ kept_rows_keys(kept_rows_options().grain, state) }}
    {%- endif -%}
{%- endmacro %}

{#- The keys a delta run recomputes (`state`: kept_rows_state), by grain: the orders of
    int_orders_changes ('orders'), their customers ('customers'), or those and the
    customers who bought on a day that left or entered one of the trailing windows
    (macros/customer_windows.sql) since the last build ('window_customers'). -#}
{% macro kept_rows_keys(grain, state) -%}
    {%- if grain == 'orders' -%}
    order_id in (select order_id from {{ ref('int_orders_changes') }})
    {%- elif grain == 'customers' -%}
    customer_id in (select customer_id from {{ ref('int_orders_changes') }})
    {%- elif grain == 'window_customers' -%}
    customer_id in (
        select customer_id from {{ ref('int_orders_changes') }}
        union
        select customer_id from {{ ref('int_orders') }}
        where is_purchase
          and {{ customer_window_moved_days(modules.datetime.date.fromisoformat(state.since),
                                            modules.datetime.date.fromisoformat(crm_as_of())) }}
    )
    {%- else -%}
    {{ exceptions.raise_compiler_error("kept_rows_keys: unknown grain " ~ grain) }}
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of a kept model: delete what its SELECT appends again (every row on a
    full build, the changed keys on a delta run). -#}
{% macro kept_rows_reset() -%}
    {%- if not execute or this is none or not is_incremental() -%}
        select 1
    {%- else -%}
        {%- set state = kept_rows_state() -%}
        {%- if state.mode == 'full' -%}
        {{ crm_empty_table(this) }}
        {%- else -%}
        delete from {{ this }} where {{ kept_rows_keys(kept_rows_options().grain, state) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
