-- The latest version of every order known as of the run date, unless deleted, as
-- extracted (order currency, any order date). Kept between runs (macros/kept/): a run
-- recomputes only the orders of int_orders_changes; a backfill or --full-refresh
-- recomputes every order. int_orders converts and filters it.
{{ config(**kept_rows_config('orders', code_version=false, indexes=[['order_id']])) }}

with order_versions as (
    select * from {{ ref('stg_crm__orders') }}
    where {{ kept_rows_changed() }}
),

latest as (
    {{ latest_as_of('order_versions', 'order_id') }}
),

final as (
    select
        {{ crm_order_columns() }}
    from latest
)

{{ kept_rows_select('final') }}
