{#- The value and segment models' calculations: scores, list membership and money ratios,
    written so that DuckDB and PostgreSQL return identical values (dispatched where the
    engines differ). -#}

{#- Score 1..n_bins (n_bins = best) of a value among a population, from rank() so that
    equal values share a rank and therefore a score:
        score = 1 + floor(n_bins * (rank - 1) / population)
    where rank counts from 1 for the worst value. With distinct values this puts exactly
    population / n_bins members in each bin when it divides evenly. `order_by` orders
    worst first. Integer division is written as floor over an exact quotient so that the
    engines agree (DuckDB's `/` on integers returns a double, PostgreSQL's truncates). -#}
{% macro value_rank_score(order_by, population, n_bins=5) -%}
    cast(1 + floor({{ n_bins }} * cast(rank() over (order by {{ order_by }}) - 1 as numeric(18, 0)) / {{ population }}) as integer)
{%- endmacro %}

{#- '|'-separated list membership, e.g. value_in_list("'VIP|Major'", "value_tier").
    A null list means "any value" and is handled by the caller. -#}
{% macro value_in_list(list_expr, value_expr) -%}
    ('|' || {{ list_expr }} || '|' like '%|' || {{ value_expr }} || '|%')
{%- endmacro %}

{#- A money amount divided by a positive count, as numeric(18,2) rounded half away from
    zero (PostgreSQL's numeric rounding), identically on both engines (DuckDB turns decimal
    division and avg() into doubles, which round 0.005 cases differently). -#}
{% macro value_money_ratio(amount, count) -%}
    {{ return(adapter.dispatch('value_money_ratio')(amount, count)) }}
{%- endmacro %}

{% macro default__value_money_ratio(amount, count) -%}
    cast(cast({{ amount }} as numeric(38, 6)) / ({{ count }}) as numeric(18, 2))
{%- endmacro %}

{% macro duckdb__value_money_ratio(amount, count) -%}
    cast(
        sign({{ amount }})
        * cast((2 * cast(round(abs(cast({{ amount }} as decimal(38, 2))) * 100) as hugeint) + ({{ count }})) // (2 * ({{ count }})) as decimal(38, 0))
        * cast(0.01 as decimal(3, 2))
    as numeric(18, 2))
{%- endmacro %}

{#- One money amount as a share of another (whole > 0), as numeric(18, scale) rounded half
    away from zero, identically on every engine: PostgreSQL and Spark divide decimals
    exactly, DuckDB in double precision, which rounds a quotient such as 23220.69 / 60000
    = 0.3870115 down at six decimals; there the share is computed on whole cents. -#}
{% macro value_money_share(part, whole, scale=6) -%}
    {{ return(adapter.dispatch('value_money_share')(part, whole, scale)) }}
{%- endmacro %}

{% macro default__value_money_share(part, whole, scale) -%}
    cast(cast({{ part }} as numeric(38, 12)) / ({{ whole }}) as numeric(18, {{ scale }}))
{%- endmacro %}

{% macro duckdb__value_money_share(part, whole, scale) -%}
    {%- set part_cents = "cast(round(abs(cast(" ~ part ~ " as decimal(38, 2))) * 100) as hugeint)" -%}
    {%- set whole_cents = "cast(round(cast(" ~ whole ~ " as decimal(38, 2)) * 100) as hugeint)" -%}
    cast(
        sign({{ part }})
        * cast((2 * {{ part_cents }} * {{ 10 ** scale }} + {{ whole_cents }}) // (2 * {{ whole_cents }}) as decimal(38, 0))
        * cast(1e-{{ scale }} as decimal({{ scale + 1 }}, {{ scale }}))
    as numeric(18, {{ scale }}))
{%- endmacro %}
