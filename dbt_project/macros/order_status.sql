{#- Which order statuses count as what: a purchase (the customer bought, even if the goods
    came back) and an invoiced sale (revenue and margin). The lists are the vars
    purchase_statuses and invoiced_statuses (dbt_project.yml; docs/rules.md). -#}

{% macro status_in(column, statuses) -%}
    {{ column }} in ({% for status in statuses %}'{{ status }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{% macro is_purchase(column) -%}
    {{ status_in(column, var('purchase_statuses')) }}
{%- endmacro %}

{% macro is_invoiced(column) -%}
    {{ status_in(column, var('invoiced_statuses')) }}
{%- endmacro %}
