{#- Order amounts in the reporting currency: the one conversion rule (seed fx_rates) for
    every model that reads order versions (int_orders, int_credit_orders_at_cutoff).
    `orders` and `fx` are the aliases joined on currency; an unknown currency never gets
    here (gate 1 quarantines it). -#}
{% macro order_amounts_in_reporting_currency(orders, fx) -%}
        cast({{ orders }}.gross_amount * {{ fx }}.rate_to_reporting as decimal(18, 2)) as gross_amount,
        cast({{ orders }}.cost_amount * {{ fx }}.rate_to_reporting as decimal(18, 2)) as cost_amount,
        cast(coalesce({{ orders }}.paid_amount, 0) * {{ fx }}.rate_to_reporting as decimal(18, 2)) as paid_amount,
        cast(coalesce({{ orders }}.written_off_amount, 0) * {{ fx }}.rate_to_reporting as decimal(18, 2)) as written_off_amount
{%- endmacro %}
