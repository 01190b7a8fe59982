-- The orders a nightly run has to recompute in the models kept between runs, found once
-- per run instead of by each of them: every version (order id, customer id) of an order
-- with a version the run may read that the oldest kept build could not, and of an order
-- whose order date that build's as_of had not reached yet. Empty when no kept model has
-- rows a run may keep (a first load, a backfill): those models then compute all rows.
{#- See macros/latest_incremental.sql (kept_changes_state). The pre-hook indexes raw.orders
    on PostgreSQL for the lookups by order id and the newest load time. -#}
{{ config(materialized='table',
          pre_hook="{{ crm_indexes(crm_source_relation('raw', 'orders'), [['order_id'], ['_loaded_at']]) }}",
          post_hook="{{ analyze_relation(this) }}") }}
{%- set state = kept_changes_state() %}

{%- if state.mode == 'full' %}
select order_id, customer_id
from {{ source('raw', 'orders') }}
where 1 = 0
{%- else %}
select order_id, customer_id
from {{ source('raw', 'orders') }}
where order_id in (
    select order_id
    from {{ source('raw', 'orders') }}
    where _visible_from <= {{ as_of_date() }}
      and updated_at < {{ as_of_end() }}
      and not (
          _visible_from <= cast('{{ state.since }}' as date)
          and updated_at < cast('{{ state.since_end }}' as timestamp)
          and _loaded_at <= cast('{{ state.loaded }}' as timestamp)
      )
)

union

select order_id, customer_id
from {{ source('raw', 'orders') }}
where order_date > cast('{{ state.since }}' as date)
  and order_date <= {{ as_of_date() }}
{%- endif %}
