-- The orders a nightly run recomputes in the kept models (macros/kept/), found once per
-- run instead of by each of them: every version (order id, customer id) of an order
-- with a version the run may read that the oldest kept build could not, and of an order
-- whose order date that build's as_of had not reached yet. Empty when no kept model has
-- rows a run may keep (a first load, a backfill): those models then compute all rows.
{#- stg_crm__orders is read where each filter needs it, not through one import CTE: a CTE
    read more than once is computed once in full (every version in raw) before any filter
    applies. -#}
{{ config(materialized='table', post_hook="{{ analyze_relation(this) }}") }}
{%- set since = kept_rows_since() %}

{%- if since.mode == 'full' %}

with final as (
    select order_id, customer_id
    from {{ ref('stg_crm__orders') }}
    where 1 = 0
)

{%- else %}

with changed_orders as (
    select order_id
    from {{ ref('stg_crm__orders') }}
    where _visible_from <= {{ as_of_date() }}
      and updated_at < {{ as_of_end() }}
      and not (
          _visible_from <= cast('{{ since.since }}' as date)
          and updated_at < cast('{{ since.since_end }}' as timestamp)
          and _loaded_at <= cast('{{ since.loaded }}' as timestamp)
      )
),

final as (
    select order_id, customer_id
    from {{ ref('stg_crm__orders') }}
    where order_id in (select order_id from changed_orders)

    union

    select order_id, customer_id
    from {{ ref('stg_crm__orders') }}
    where order_date > cast('{{ since.since }}' as date)
      and order_date <= {{ as_of_date() }}
)

{%- endif %}

select * from final
