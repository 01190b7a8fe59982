{#- The trailing windows of purchase totals that the customer models read, each a range of
    days that moves with the run date: (name, days before as_of its last day falls, length
    in days), both ends included.
      trailing     RFM / CLV trailing value (var trailing_days)
      basis        the value pyramid and cost to serve (var pyramid_basis_days)
      year         the churn marts' trailing 12 months (var churn_year_days)
      prior_year   the 12 months before those
      prior_basis  last year's pyramid basis, ending churn_year_days before as_of
    int_customer_window_totals keeps them per customer between runs. -#}
{% macro customer_windows() -%}
    {%- set year_days = var('churn_year_days') | int -%}
    {{ return([
        ('trailing', 0, var('trailing_days') | int),
        ('basis', 0, var('pyramid_basis_days') | int),
        ('year', 0, year_days),
        ('prior_year', year_days, year_days),
        ('prior_basis', year_days, var('pyramid_basis_days', var('trailing_days')) | int),
    ]) }}
{%- endmacro %}

{#- First and last day of a window (see customer_windows) for a run date (a date). -#}
{% macro customer_window_bounds(as_of, window) -%}
    {%- set last = as_of - modules.datetime.timedelta(days=window[1]) -%}
    {{ return([last - modules.datetime.timedelta(days=window[2] - 1), last]) }}
{%- endmacro %}

{#- The purchase days whose window membership differs between run dates `since` and
    `as_of` (since <= as_of): for each window, the days that left it and the days that
    entered it. A condition on order_date; false when the dates are equal. -#}
{% macro customer_window_moved_days(since, as_of) -%}
    {%- set ranges = [] -%}
    {%- for window in customer_windows() -%}
        {%- set old = customer_window_bounds(since, window) -%}
        {%- set new = customer_window_bounds(as_of, window) -%}
        {%- if new[0] > old[0] -%}
            {%- do ranges.append([old[0], [new[0] - modules.datetime.timedelta(days=1), old[1]] | min]) -%}
        {%- endif -%}
        {%- if new[1] > old[1] -%}
            {%- do ranges.append([[old[1] + modules.datetime.timedelta(days=1), new[0]] | max, new[1]]) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if ranges | length == 0 -%}
    1 = 0
    {%- else -%}
    ({%- for r in ranges %}{{ ' or ' if not loop.first }}order_date between cast('{{ r[0] }}' as date) and cast('{{ r[1] }}' as date){%- endfor %})
    {%- endif -%}
{%- endmacro %}
