-- The latest version of every order known as of the run date, as extracted (source
-- currency, any order date), maintained from new batches: see macros/latest_incremental.sql.
-- stg_crm__orders converts and filters it.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='sync_all_columns',
          tags=['kept_orders'],
          pre_hook="{{ latest_incremental_reset() }}",
          post_hook=["{{ crm_indexes(this, [['order_id']]) }}", "{{ analyze_relation(this) }}"]) }}
-- depends_on: {{ ref('stg_crm__orders_changes') }}

{{ latest_incremental_select(source('raw', 'orders'), 'order_id', [
    'order_id', 'customer_id', 'order_date', 'status', 'currency', 'gross_amount', 'cost_amount',
    'paid_amount', 'written_off_amount', 'product_category', 'invoice_due_date', 'paid_at', 'updated_at',
]) }}
