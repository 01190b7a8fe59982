{#- The churn reasons of docs/rules.md "Why customers leave", in the order an account
    manager reads them (the first that applies is the primary reason): name -> condition
    on a row of int_churn_reason_signals. -#}
{% macro churn_reason_rules() -%}
    {%- set rules = [('unresolved_complaint', 'unresolved_complaints > 0')] -%}
    {%- for category in complaint_category_names() -%}
        {%- do rules.append(('complaint_' ~ category, 'complaints_' ~ category ~ ' > 0')) -%}
    {%- endfor -%}
    {%- do rules.append(('late_payment', 'late_payments > 0')) -%}
    {%- do rules.append(('price_increase', 'window_margin_share - base_margin_share > '
        ~ var('churn_reason_margin_increase'))) -%}
    {%- do rules.append(('narrower_range', 'window_product_categories < base_product_categories')) -%}
    {%- do rules.append(('compensation', 'compensation > 0')) -%}
    {{ return(rules) }}
{%- endmacro %}
