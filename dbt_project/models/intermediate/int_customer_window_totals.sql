-- Owns each customer's purchase totals in the trailing windows that move with the run
-- date (macros/customer_windows.sql): net revenue, gross margin and purchase orders per
-- window. One row per customer with a purchase in at least one window.
{#- Kept between runs (macros/kept/): a run recomputes the customers of the changed
    orders and the customers with a purchase on a day that left or entered a window since
    the last build (one day's buyers per window edge on a nightly run); every other
    customer's windows hold the same orders as before. A backfill, a change to this
    model, to anything upstream or to a window's length, or --full-refresh recomputes
    all. -#}
{{ config(**kept_rows_config('window_customers', 'windows=' ~ customer_windows())) }}
{%- set windows = customer_windows() %}
{%- set as_of = modules.datetime.date.fromisoformat(crm_as_of()) %}
{%- set starts = [] %}
{%- for window in windows %}{% do starts.append(customer_window_bounds(as_of, window)[0]) %}{% endfor %}

with purchases as (
    select customer_id, order_date, net_revenue, gross_margin
    from {{ ref('int_orders') }}
    where is_purchase
      and order_date >= cast('{{ starts | min }}' as date)
      and {{ kept_rows_changed() }}
),

final as (
    select
        customer_id,
        {%- for window in windows %}
        {%- set bounds = customer_window_bounds(as_of, window) %}
        {%- set inside = "order_date between cast('" ~ bounds[0] ~ "' as date) and cast('" ~ bounds[1] ~ "' as date)" %}
        cast(sum(case when {{ inside }} then net_revenue else 0 end) as numeric(18, 2)) as {{ window[0] }}_net_revenue,
        cast(sum(case when {{ inside }} then gross_margin else 0 end) as numeric(18, 2)) as {{ window[0] }}_gross_margin,
        cast(count(case when {{ inside }} then 1 end) as integer) as {{ window[0] }}_orders{{ ',' if not loop.last }}
        {%- endfor %}
    from purchases
    group by customer_id
)

{{ kept_rows_select('final') }}
