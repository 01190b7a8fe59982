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

{#- The credit snapshot's inputs, one *_at_cutoff model each (column reconstructed_<input>
    of int_credit_indicators). -#}
{% macro credit_input_names() -%}
    {{ return(['customers', 'orders', 'complaints', 'contacts', 'financial_statements']) }}
{%- endmacro %}

{#- The inputs each indicator's value is computed from (int_credit_indicators): an
    indicator rests on reconstructed data when one of them was read from a reconstructed
    version for the customer (int_credit_grades.reconstructed_indicators). -#}
{% macro credit_indicator_inputs() -%}
    {%- set statements = ['financial_statements'] -%}
    {%- set orders = ['orders'] -%}
    {{ return({
        'years_as_customer': ['customers'], 'complaint_rate': ['complaints', 'orders'],
        'dispute_count': ['complaints'], 'contact_completeness': ['contacts'], 'key_role_coverage': ['contacts'],
        'on_time_payment_rate': orders, 'avg_days_past_due': orders, 'max_days_overdue': orders,
        'overdue_count': orders, 'written_off_amount': orders,
        'debt_ratio': statements, 'current_ratio': statements, 'credit_utilisation': ['customers', 'orders'],
        'order_frequency': orders, 'revenue_growth_qoq': orders, 'purchase_regularity': orders,
        'product_breadth': orders,
        'net_margin': statements, 'return_on_assets': statements, 'gross_margin_brought': orders
    }) }}
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
    {#- added later: last, so a published history migrated with `add column` keeps the order -#}
    {%- do columns.extend(['is_reconstructed', 'reconstructed_indicators']) -%}
    {{ return(columns) }}
{%- endmacro %}

{#- The type of an indicator's value while it is scored: a double, never rounded, so a
    value binned by the scorecard is the exact value (see docs/rules.md, "Exact credit
    grades"); the published grade row rounds it to four decimals for display only. -#}
{% macro credit_indicator_type() -%}
    {{ return(crm_type_double()) }}
{%- endmacro %}
