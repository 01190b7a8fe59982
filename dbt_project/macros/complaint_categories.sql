{#- Complaint categories with their own column in complaint_summary (cat_<name>); any
    other source category is counted under 'other'. -#}
{% macro complaint_category_names() -%}
    {{ return(['delivery', 'quality', 'billing_dispute', 'service', 'product', 'other']) }}
{%- endmacro %}
