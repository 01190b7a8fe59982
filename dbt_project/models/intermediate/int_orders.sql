-- One row per order known as of the run date, with the amounts the marts share:
-- net revenue (returns and cancellations count zero), gross margin, and payment timing.
{#- Kept between runs (macros/latest_incremental.sql): a run recomputes only the orders
    with a changed version or an order date the last build's as_of had not reached; a
    backfill, a code change upstream or --full-refresh recomputes every order. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='sync_all_columns',
          tags=['kept_orders'],
          pre_hook="{{ kept_rows_reset('orders') }}",
          post_hook=["{{ crm_indexes(this, [['order_id'], ['customer_id', 'order_date'], ['order_date']]) }}",
                     "{{ analyze_relation(this) }}"]) }}
-- depends_on: {{ ref('stg_crm__orders_changes') }}
{%- set code_version = upstream_code_version() %}
{%- set state = kept_rows_state(code_version) %}

with orders as (
    select * from {{ ref('stg_crm__orders') }}
    {%- if state.mode == 'delta' %}
    where {{ kept_rows_changed('orders') }}
    {%- endif %}
),

final as (
    select
        order_id,
        customer_id,
        order_date,
        status,
        product_category,
        status in ('placed', 'shipped', 'returned') as is_purchase,
        gross_amount,
        cost_amount,
        case when status in ('placed', 'shipped') then gross_amount else 0 end as net_revenue,
        case when status in ('placed', 'shipped') then gross_amount - cost_amount else 0 end as gross_margin,
        paid_amount,
        written_off_amount,
        invoice_due_date,
        paid_at,
        case
            when status in ('placed', 'shipped') and paid_at is not null
                then {{ dbt.datediff('invoice_due_date', 'cast(paid_at as date)', 'day') }}
        end as days_paid_after_due
    from orders
)

{{ kept_rows_select('final', code_version) }}
