{#- Cross-database SQL: everything that differs between DuckDB, PostgreSQL and Spark goes
    through adapter.dispatch here (or in value_calculations.sql); the models stay plain SQL.
    Spark's variants are in spark.sql. -#}

{#- Type names the engines spell differently: a string without a length (Spark wants a
    length after varchar) and an 8-byte float (PostgreSQL has no bare "double"). -#}
{% macro crm_type_string() -%}
    {{ return(adapter.dispatch('crm_type_string')()) }}
{%- endmacro %}

{% macro default__crm_type_string() -%}
    {{ return('varchar') }}
{%- endmacro %}

{#- Whether a table takes a row-level DELETE. The kept models (macros/kept/) recompute only
    the changed keys where it does, and every row where it does not (Spark's Parquet
    tables). -#}
{% macro crm_deletes_rows() -%}
    {{ return(adapter.dispatch('crm_deletes_rows')()) }}
{%- endmacro %}

{% macro default__crm_deletes_rows() -%}
    {{ return(true) }}
{%- endmacro %}

{% macro crm_type_double() -%}
    {{ return(adapter.dispatch('crm_type_double')()) }}
{%- endmacro %}

{% macro default__crm_type_double() -%}
    {{ return('double precision') }}
{%- endmacro %}

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

{#- Discrete percentile (p in 0..1): the first value whose cumulative share reaches p, a
    value of the data, exact on both engines. -#}
{% macro crm_percentile_disc(expr, p) -%}
    {{ return(adapter.dispatch('crm_percentile_disc')(expr, p)) }}
{%- endmacro %}

{% macro default__crm_percentile_disc(expr, p) -%}
    percentile_disc({{ p }}) within group (order by {{ expr }})
{%- endmacro %}

{% macro duckdb__crm_percentile_disc(expr, p) -%}
    quantile_disc({{ expr }}, {{ p }})
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

