{#- The credit snapshot (int_credit_indicators, int_credit_indicator_points) is computed
    once per quarter and reused by every later run inside it.

    A grade for quarter Q reads only data that had reached the warehouse by the last day
    of the quarter before (data_through), so every run inside Q computes the same rows.
    The two models are incremental: each stores the fingerprint of what its rows were
    computed from (`_input_fingerprint`), and a run whose fingerprint is the stored one
    adds nothing and keeps them; any other run (a new quarter, a backfill into another
    quarter, a changed scorecard, setting or model, raw rows that became visible by
    data_through after the fact) deletes them and computes the quarter again, in the same
    transaction. `dbt build --full-refresh` rebuilds them as well. -#}

{#- What the snapshot is computed from, as an md5: the quarter; the credit settings; the
    code (the checksum of every model and seed, and var macros_version: the pipeline
    passes the md5 of macros/, a run without it computes the snapshot again); and the raw
    versions visible by data_through (count and newest _loaded_at per raw table). A change
    to any model makes the next run compute the quarter again, once: conservative on
    purpose. -#}
{% macro credit_input_fingerprint() -%}
    {#- '' at parse time, and in unit tests (their graph is empty; they never reuse rows) -#}
    {%- if not execute or 'nodes' not in graph or crm_describing_only() -%}{{ return('') }}{%- endif -%}
    {%- set dates = credit_quarter_dates() -%}
    {%- set parts = ['quarter=' ~ dates['grade_quarter'] ~ ' through=' ~ dates['data_through'],
                     'window=' ~ var('credit_window_days') ~ ' regularity=' ~ var('credit_regularity_window_days')
                     ~ ' dispute=' ~ var('credit_dispute_category')] -%}
    {%- for node in graph.nodes.values() | sort(attribute='unique_id') -%}
        {%- if node.package_name == project_name and node.resource_type in ('seed', 'model') -%}
            {%- do parts.append(node.unique_id ~ '=' ~ node.checksum.checksum) -%}
        {%- endif -%}
    {%- endfor -%}
    {#- macros are not in dbt's graph: the pipeline passes the md5 of the macro files -#}
    {%- do parts.append('macros=' ~ var('macros_version', '')) -%}
    {%- set counts = [] -%}
    {%- for src in graph.sources.values() | sort(attribute='unique_id') -%}
        {%- if src.package_name == project_name and src.source_name == 'raw' -%}
            {%- do counts.append("select '" ~ src.name ~ "' as t, count(*) as n, cast(max(_loaded_at) as " ~ crm_type_string() ~ ") as l "
                                 ~ "from " ~ src.relation_name ~ " where _visible_from <= "
                                 ~ "cast('" ~ dates['data_through'] ~ "' as date)") -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set state = run_query(counts | join(' union all ') ~ ' order by 1') -%}
    {%- for row in state.rows -%}
        {%- do parts.append('raw.' ~ row[0] ~ ' n=' ~ row[1] ~ ' loaded=' ~ row[2]) -%}
    {%- endfor -%}
    {{ return(local_md5(parts | join('\n'))) }}
{%- endmacro %}

{#- True when this incremental model already holds exactly the rows of `fingerprint`. -#}
{% macro credit_snapshot_is_current(fingerprint) -%}
    {%- if not execute or this is none or not is_incremental() or crm_describing_only() -%}{{ return(false) }}{%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- if '_input_fingerprint' not in columns -%}{{ return(false) }}{%- endif -%}
    {%- set result = run_query(
        "select count(*), sum(case when _input_fingerprint = '" ~ fingerprint ~ "' then 1 else 0 end) from " ~ this) -%}
    {%- set n, same = result.rows[0][0], result.rows[0][1] -%}
    {{ return(n > 0 and n == same) }}
{%- endmacro %}

{#- The fingerprint a snapshot model's rows must carry. `upstream`: the snapshot model it
    is computed from, already built in this run; its rows' fingerprint is this model's too
    (the fingerprint covers the code of every model, so nothing of this one can change
    without changing that one). Read from one row of it instead of counting raw again:
    only int_credit_indicators counts every raw table (its pre-hook and its SELECT), not
    every snapshot model. An empty upstream (no customer graded) falls back to the count. -#}
{% macro credit_snapshot_fingerprint(upstream=none) -%}
    {%- if upstream is not none and execute and 'nodes' in graph and not crm_describing_only() -%}
        {%- set stored = run_query("select _input_fingerprint from " ~ upstream ~ " limit 1") -%}
        {%- if stored.rows | length > 0 and stored.rows[0][0] -%}
            {{ return(stored.rows[0][0]) }}
        {%- endif -%}
    {%- endif -%}
    {{ return(credit_input_fingerprint()) }}
{%- endmacro %}

{#- The pre-hook of a snapshot model: on an incremental run that does not reuse the stored
    rows, delete them (the model's SELECT then appends the quarter computed afresh). -#}
{% macro credit_snapshot_reset(upstream=none) -%}
    {%- if execute and is_incremental() and not credit_snapshot_is_current(credit_snapshot_fingerprint(upstream)) -%}
        {{ crm_empty_table(this) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The closing SELECT of a snapshot model: the rows of CTE `cte` with this run's
    fingerprint, or none when the stored rows already carry it (they are kept). -#}
{% macro credit_snapshot_rows(cte, upstream=none) -%}
    {%- set fingerprint = credit_snapshot_fingerprint(upstream) -%}
select
    *,
    cast('{{ fingerprint }}' as varchar(32)) as _input_fingerprint
from {{ cte }}
{%- if credit_snapshot_is_current(fingerprint) %}
-- the stored rows were computed from the same inputs: nothing to add
where 1 = 0
{%- endif %}
{%- endmacro %}
