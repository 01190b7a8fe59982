{#- Each complaint's reference order date (int_complaint_enriched): its own order's date
    when it names an order of the same customer, otherwise the customer's latest purchase
    day on or before the opening day. Columns: complaint_id, reference_order_date.
    `complaints` is a CTE name, `orders` the int_orders relation (read in subqueries, which
    `dbt build --empty` can wrap).

    The default joins every complaint with all of its customer's purchases and
    aggregates. DuckDB finds the latest purchase with an ASOF join instead, over the
    purchases of customers who complained only: the ASOF join sorts its right side, which
    is then less than half of all purchases. On PostgreSQL the default's join yields
    several rows per order (the customers who complain buy often); there each complaint
    looks its two dates up through int_orders' indexes (order_id; customer_id,
    order_date: see crm_indexes) instead. -#}
{% macro complaint_reference_orders(complaints, orders) -%}
    {{ return(adapter.dispatch('complaint_reference_orders', 'crm')(complaints, orders)) }}
{%- endmacro %}

{#- The part both joins share: each complaint with its own order (when it names one of
    the same customer), and `latest_join`, which joins latest_purchase_before. -#}
{% macro _complaint_reference_select(complaints, orders, latest_join) -%}
    select
        {{ complaints }}.complaint_id,
        coalesce(linked_order.order_date, latest_purchase_before.order_date) as reference_order_date
    from {{ complaints }}
    left join (select * from {{ orders }}) as linked_order
        on {{ complaints }}.order_id = linked_order.order_id
        and {{ complaints }}.customer_id = linked_order.customer_id
    {{ latest_join }}
{%- endmacro %}

{% macro default__complaint_reference_orders(complaints, orders) -%}
    {%- set latest_join -%}
    left join (
        select
            {{ complaints }}.complaint_id,
            max(purchases.order_date) as order_date
        from {{ complaints }}
        inner join (select * from {{ orders }}) as purchases
            on {{ complaints }}.customer_id = purchases.customer_id
            and purchases.is_purchase
            and purchases.order_date <= cast({{ complaints }}.opened_at as date)
        group by {{ complaints }}.complaint_id
    ) as latest_purchase_before
        on {{ complaints }}.complaint_id = latest_purchase_before.complaint_id
    {%- endset -%}
    {{ _complaint_reference_select(complaints, orders, latest_join) }}
{%- endmacro %}

{% macro duckdb__complaint_reference_orders(complaints, orders) -%}
    {%- set latest_join -%}
    asof left join (
        select customer_id, order_date from {{ orders }}
        where is_purchase and customer_id in (select customer_id from {{ complaints }})
    ) as latest_purchase_before
        on {{ complaints }}.customer_id = latest_purchase_before.customer_id
        and cast({{ complaints }}.opened_at as date) >= latest_purchase_before.order_date
    {%- endset -%}
    {{ _complaint_reference_select(complaints, orders, latest_join) }}
{%- endmacro %}

{% macro postgres__complaint_reference_orders(complaints, orders) -%}
    select
        {{ complaints }}.complaint_id,
        coalesce(
            (
                select linked_order.order_date
                from (select * from {{ orders }}) as linked_order
                where linked_order.order_id = {{ complaints }}.order_id
                    and linked_order.customer_id = {{ complaints }}.customer_id
            ),
            (
                select max(purchases.order_date)
                from (select * from {{ orders }}) as purchases
                where purchases.customer_id = {{ complaints }}.customer_id
                    and purchases.is_purchase
                    and purchases.order_date <= cast({{ complaints }}.opened_at as date)
            )
        ) as reference_order_date
    from {{ complaints }}
{%- endmacro %}
