{#- The acquisition marts' shared columns (docs/rules.md "Acquisition channels and cohorts"):
    the months after acquisition whose retention is a column, the values a group of
    acquired customers sums (from int_acquisition_customers) and the published columns
    built from them. -#}
{% macro acquisition_retention_months() -%}
    {{ return([1, 3, 6, 12]) }}
{%- endmacro %}

{% macro acquisition_value_sums() -%}
        count(*) as customers_acquired,
        sum(revenue_to_date) as revenue_to_date,
        sum(profit_to_date) as profit_to_date,
        count(clv_12m) as customers_with_clv,
        sum(clv_12m) as clv_12m_total
{%- endmacro %}

{% macro acquisition_value_columns(values, retention) -%}
        cast({{ as_of_date() }} as date) as as_of,
        cast({{ values }}.customers_acquired as integer) as customers_acquired,
        {%- for k in acquisition_retention_months() %}
        cast({{ retention }}.retention_m{{ k }} as numeric(9, 6)) as retention_m{{ k }},
        {%- endfor %}
        cast({{ values }}.revenue_to_date as numeric(18, 2)) as revenue_to_date,
        cast({{ values }}.profit_to_date as numeric(18, 2)) as profit_to_date,
        {{ value_money_ratio(values ~ '.revenue_to_date', values ~ '.customers_acquired') }} as revenue_per_customer,
        {{ value_money_ratio(values ~ '.profit_to_date', values ~ '.customers_acquired') }} as profit_per_customer,
        cast({{ values }}.customers_with_clv as integer) as customers_with_clv,
        cast(case when {{ values }}.customers_with_clv > 0
            then {{ value_money_ratio(values ~ '.clv_12m_total', values ~ '.customers_with_clv') }}
        end as numeric(18, 2)) as clv_12m_per_customer
{%- endmacro %}
