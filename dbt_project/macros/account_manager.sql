{#- The account manager as the lists made for account managers show it: a customer with
    none is listed under '(unassigned)' (docs/rules.md), the same label in every model. -#}
{% macro crm_account_manager(column) -%}
    coalesce({{ column }}, '(unassigned)')
{%- endmacro %}
