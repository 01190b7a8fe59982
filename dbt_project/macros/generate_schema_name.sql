{#- Schemas are named by layer (staging, intermediate, audit, config), not prefixed by
    the target schema: the publish step and BI address them by these fixed names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
