{#- Cross-database SQL for the risk marts (credit, churn, retention, complaints, contacts).
    Everything that differs between DuckDB and PostgreSQL goes through adapter.dispatch
    here; the models stay plain SQL. Also owns the quarter arithmetic of the credit grades
    (computed in Jinja from crm_as_of(), so it is identical on both engines). -#}

{#- Continuous percentile as an aggregate (p in 0..1): DuckDB quantile_cont,
    PostgreSQL percentile_cont ... within group. Nulls are ignored by both. -#}
{% macro crm_percentile_cont(expr, p) -%}
    {{ return(adapter.dispatch('crm_percentile_cont')(expr, p)) }}
{%- endmacro %}

{% macro default__crm_percentile_cont(expr, p) -%}
    percentile_cont({{ p }}) within group (order by {{ expr }})
{%- endmacro %}

{% macro duckdb__crm_percentile_cont(expr, p) -%}
    quantile_cont({{ expr }}, {{ p }})
{%- endmacro %}

{% macro crm_median(expr) -%}
    {{ crm_percentile_cont(expr, 0.5) }}
{%- endmacro %}

{#- Keep only the digits of a string (phone normalisation). -#}
{% macro crm_digits_only(expr) -%}
    {{ return(adapter.dispatch('crm_digits_only')(expr)) }}
{%- endmacro %}

{% macro default__crm_digits_only(expr) -%}
    regexp_replace({{ expr }}, '[^0-9]', '', 'g')
{%- endmacro %}

{#- Whole days from start_date to end_date (dates or timestamps; time of day ignored). -#}
{% macro crm_days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('crm_days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__crm_days_between(start_date, end_date) -%}
    (cast({{ end_date }} as date) - cast({{ start_date }} as date))
{%- endmacro %}

{% macro duckdb__crm_days_between(start_date, end_date) -%}
    date_diff('day', cast({{ start_date }} as date), cast({{ end_date }} as date))
{%- endmacro %}

{#- A date plus n days, as a date on both engines (n may be an expression). -#}
{% macro crm_add_days(date_expr, n) -%}
    {{ return(adapter.dispatch('crm_add_days')(date_expr, n)) }}
{%- endmacro %}

{% macro default__crm_add_days(date_expr, n) -%}
    (cast({{ date_expr }} as date) + cast({{ n }} as integer))
{%- endmacro %}

{% macro duckdb__crm_add_days(date_expr, n) -%}
    cast(cast({{ date_expr }} as date) + to_days(cast({{ n }} as integer)) as date)
{%- endmacro %}

{#- A date plus n months (n an expression), as a date. -#}
{% macro crm_add_months(date_expr, n) -%}
    {{ return(adapter.dispatch('crm_add_months')(date_expr, n)) }}
{%- endmacro %}

{% macro default__crm_add_months(date_expr, n) -%}
    cast(cast({{ date_expr }} as date) + make_interval(months => cast({{ n }} as integer)) as date)
{%- endmacro %}

{% macro duckdb__crm_add_months(date_expr, n) -%}
    cast(cast({{ date_expr }} as date) + to_months(cast({{ n }} as integer)) as date)
{%- endmacro %}

{#- Elapsed hours between two timestamps, as a decimal. -#}
{% macro crm_hours_between(start_ts, end_ts) -%}
    {{ return(adapter.dispatch('crm_hours_between')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro default__crm_hours_between(start_ts, end_ts) -%}
    cast(extract(epoch from (cast({{ end_ts }} as timestamp) - cast({{ start_ts }} as timestamp))) / 3600.0 as numeric(18, 4))
{%- endmacro %}

{% macro duckdb__crm_hours_between(start_ts, end_ts) -%}
    {#- microseconds, as PostgreSQL's epoch of an interval: date_diff('second') would drop the fraction -#}
    cast(cast(date_diff('microsecond', cast({{ start_ts }} as timestamp), cast({{ end_ts }} as timestamp)) as numeric(38, 6)) / 3600000000 as numeric(18, 4))
{%- endmacro %}

{#- First day of the month / quarter of a date, as a date. -#}
{% macro crm_month_start(date_expr) -%}
    cast({{ dbt.date_trunc('month', date_expr) }} as date)
{%- endmacro %}

{% macro crm_quarter_start(date_expr) -%}
    cast({{ dbt.date_trunc('quarter', date_expr) }} as date)
{%- endmacro %}

{#- Credit grades are quarterly: for as_of in quarter Q the grade holds for Q
    (grade_quarter = first day of Q) and is computed from data through the last day of
    the previous quarter (data_through), as a run on that day would have seen it. Both
    dates depend only on the quarter of as_of, so every run inside Q gives the same rows. -#}
{% macro _credit_quarter_dates() -%}
    {%- set d = modules.datetime.date.fromisoformat(crm_as_of()) -%}
    {%- set q_start = modules.datetime.date(d.year, ((d.month - 1) // 3) * 3 + 1, 1) -%}
    {%- set through = q_start - modules.datetime.timedelta(days=1) -%}
    {{ return({'grade_quarter': q_start.isoformat(), 'data_through': through.isoformat(),
               'cutoff_end': q_start.isoformat()}) }}
{%- endmacro %}

{% macro credit_grade_quarter() -%}
    cast('{{ _credit_quarter_dates()["grade_quarter"] }}' as date)
{%- endmacro %}

{% macro credit_data_through() -%}
    cast('{{ _credit_quarter_dates()["data_through"] }}' as date)
{%- endmacro %}

{#- The first instant after data_through (exclusive upper bound for timestamps). -#}
{% macro credit_data_end() -%}
    cast('{{ _credit_quarter_dates()["cutoff_end"] }}' as timestamp)
{%- endmacro %}

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

{#- Complaint categories with their own column in complaint_summary (cat_<name>); any
    other source category is counted under 'other'. -#}
{% macro complaint_category_names() -%}
    {{ return(['delivery', 'quality', 'billing_dispute', 'service', 'product', 'other']) }}
{%- endmacro %}

{#- SQL list literal of a Jinja list of strings: ('a', 'b'). -#}
{% macro crm_in_list(values) -%}
    ({% for v in values %}'{{ v }}'{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}

{#- SHA-256 of a text expression as lowercase hex. -#}
{% macro crm_sha256_hex(expr) -%}
    {{ return(adapter.dispatch('crm_sha256_hex')(expr)) }}
{%- endmacro %}

{% macro default__crm_sha256_hex(expr) -%}
    encode(sha256(convert_to({{ expr }}, 'UTF8')), 'hex')
{%- endmacro %}

{% macro duckdb__crm_sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

