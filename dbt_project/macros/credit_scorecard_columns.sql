{#- The 20 credit-scorecard indicators, in scorecard order. The SQL names the columns
    ind_<name> / pts_<name>; seed credit_scorecard must list exactly these names (a
    relationships test and an accepted_values test check both directions). -#}
{% macro credit_indicator_names() -%}
    {{ return([
        'years_as_customer', 'complaint_rate', 'dispute_count', 'contact_completeness', 'key_role_coverage',
        'on_time_payment_rate', 'avg_days_past_due', 'max_days_overdue', 'overdue_count', 'written_off_amount',
        'debt_ratio', 'current_ratio', 'credit_utilisation',
        'order_frequency', 'revenue_growth_qoq', 'purchase_regularity', 'product_breadth',
        'net_margin', 'return_on_assets', 'gross_margin_brought'
    ]) }}
{%- endmacro %}

{#- The five scorecard categories, in order (column cat_<name>_points). -#}
{% macro credit_category_names() -%}
    {{ return(['character', 'fulfilment', 'solvency', 'operating', 'profitability']) }}
{%- endmacro %}

{#- The published columns of customer_credit_grades, in order: what int_credit_grades
    computes, without its snapshot fingerprint. -#}
{% macro credit_grade_columns() -%}
    {%- set columns = ['customer_id', 'grade_quarter', 'data_through', 'total_score', 'credit_grade',
                       'financial_points', 'non_financial_points'] -%}
    {%- for cat in credit_category_names() -%}{%- do columns.append('cat_' ~ cat ~ '_points') -%}{%- endfor -%}
    {%- do columns.extend(['has_financial_statements', 'statement_period_end', 'missing_indicator_count',
                           'missing_indicators']) -%}
    {%- for name in credit_indicator_names() -%}
        {%- do columns.extend(['ind_' ~ name, 'pts_' ~ name]) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}

{#- The type of an indicator's value while it is scored: a double, never rounded, so a
    value binned by the scorecard is the exact value (see docs/rules.md, "Exact credit
    grades"); the published grade row rounds it to four decimals for display only. -#}
{% macro credit_indicator_type() -%}
    {{ return('double precision' if target.type == 'postgres' else 'double') }}
{%- endmacro %}
