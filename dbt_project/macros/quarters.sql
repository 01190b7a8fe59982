{#- Quarter arithmetic in Jinja, identical on both engines. -#}

{#- The first day of the quarter holding `d` (a date), as a date: the one place the
    project computes a quarter's start in Jinja (the credit quarter below,
    int_credit_indicators' revenue-growth quarters). crm_quarter_start
    (cross_database.sql) does the same for a SQL expression. -#}
{% macro quarter_start_date(d) -%}
    {{ return(modules.datetime.date(d.year, ((d.month - 1) // 3) * 3 + 1, 1)) }}
{%- endmacro %}

{#- Credit grades are quarterly: for as_of in quarter Q the grade holds for Q
    (grade_quarter = first day of Q) and is computed from data through the last day of
    the previous quarter (data_through), as a run on that day would have seen it. Both
    dates depend only on the quarter of as_of, so every run inside Q gives the same rows. -#}
{% macro credit_quarter_dates() -%}
    {%- set q_start = quarter_start_date(modules.datetime.date.fromisoformat(crm_as_of())) -%}
    {%- set through = q_start - modules.datetime.timedelta(days=1) -%}
    {{ return({'grade_quarter': q_start.isoformat(), 'data_through': through.isoformat(),
               'cutoff_end': q_start.isoformat()}) }}
{%- endmacro %}

{#- The first day of the quarter holding the run date: the quarter a credit grade is for. -#}
{% macro credit_grade_quarter() -%}
    cast('{{ credit_quarter_dates()["grade_quarter"] }}' as date)
{%- endmacro %}

{% macro credit_data_through() -%}
    cast('{{ credit_quarter_dates()["data_through"] }}' as date)
{%- endmacro %}

{#- The first instant after data_through (exclusive upper bound for timestamps). -#}
{% macro credit_data_end() -%}
    cast('{{ credit_quarter_dates()["cutoff_end"] }}' as timestamp)
{%- endmacro %}
