{#- What a kept model (see kept_rows_config) continues from: {'mode': 'full'}, or
    {'mode': 'delta', 'since': the last build's as_of, 'since_end': the day after it,
    'loaded': the newest _loaded_at in raw.orders at that build}. 'full' at parse time, on
    a first build, for --full-refresh, while only describing the project, on an engine
    whose tables take no row-level delete (crm_deletes_rows), for a run earlier than the
    last build (a backfill), and when a stored row lacks a state column
    or (models with a code version) was computed by other code. One scan of the table. -#}
{% macro kept_rows_state() -%}
    {%- if not execute or this is none or not is_incremental() or flags.FULL_REFRESH or crm_describing_only()
          or not crm_deletes_rows() -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set code_version = kept_rows_code_version() if kept_rows_options().code_version else none -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- set needed = ['_built_as_of', '_raw_loaded_through'] + ([] if code_version is none else ['_code_version']) -%}
    {%- for column in needed if column not in columns -%}
        {{ return({'mode': 'full'}) }}
    {%- endfor -%}
    {%- set result = run_query("select cast(max(_built_as_of) as " ~ crm_type_string() ~ "), cast(max(_raw_loaded_through) as " ~ crm_type_string() ~ ")"
                               ~ ("" if code_version is none else ", min(_code_version), max(_code_version)")
                               ~ " from " ~ this) -%}
    {%- set since, loaded = result.rows[0][0], result.rows[0][1] -%}
    {%- if since is none or loaded is none or since > crm_as_of() -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- if code_version is not none and (result.rows[0][2] != code_version or result.rows[0][3] != code_version) -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set since_end = (modules.datetime.date.fromisoformat(since) + modules.datetime.timedelta(days=1)).isoformat() -%}
    {{ return({'mode': 'delta', 'since': since, 'since_end': since_end, 'loaded': loaded}) }}
{%- endmacro %}

{#- The oldest state any kept model may continue from (none: 'full'): the smallest
    _built_as_of and _raw_loaded_through over the kept models' tables whose rows were
    built for an as_of no later than the run's. Read by int_orders_changes before any
    kept model is rebuilt. -#}
{% macro kept_rows_since() -%}
    {%- if not execute or 'nodes' not in graph or crm_describing_only() or not crm_deletes_rows() -%}
        {{ return({'mode': 'full'}) }}
    {%- endif -%}
    {%- set built, loaded_through = [], [] -%}
    {%- for node in graph.nodes.values()
            if node.resource_type == 'model' and 'kept_rows' in node.tags and not flags.FULL_REFRESH -%}
        {%- set relation = adapter.get_relation(database=node.database, schema=node.schema,
                                                identifier=node.alias) -%}
        {%- if relation is not none -%}
            {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
            {%- if '_built_as_of' in columns and '_raw_loaded_through' in columns -%}
                {%- set row = run_query("select cast(max(_built_as_of) as " ~ crm_type_string() ~ "), "
                                        ~ "cast(max(_raw_loaded_through) as " ~ crm_type_string() ~ ") from " ~ relation).rows[0] -%}
                {%- if row[0] is not none and row[1] is not none and row[0] <= crm_as_of() -%}
                    {%- do built.append(row[0]) -%}
                    {%- do loaded_through.append(row[1]) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if built | length == 0 -%}{{ return({'mode': 'full'}) }}{%- endif -%}
    {%- set since = built | min -%}
    {%- set loaded = loaded_through | min -%}
    {%- set since_end = (modules.datetime.date.fromisoformat(since) + modules.datetime.timedelta(days=1)).isoformat() -%}
    {{ return({'mode': 'delta', 'since': since, 'since_end': since_end, 'loaded': loaded}) }}
{%- endmacro %}

{#- A number for the code a kept model is computed from: the checksums of the model and
    of every model and seed upstream of it, var macros_version (the md5 of macros/, which
    the pipeline passes) and the model's settings (kept_rows_config). 0 at parse time and
    in unit tests (their graph is empty). -#}
{% macro kept_rows_code_version() -%}
    {%- if not execute or 'nodes' not in graph or model.unique_id not in graph.nodes -%}{{ return(0) }}{%- endif -%}
    {%- set seen = [] -%}
    {%- set todo = [model.unique_id] -%}
    {#- a breadth-first walk up depends_on (Jinja has no while: at most one pass per node) -#}
    {%- for _ in graph.nodes -%}
        {%- for uid in todo if uid not in seen and uid in graph.nodes -%}
            {%- do seen.append(uid) -%}
            {%- for parent in graph.nodes[uid].depends_on.nodes if parent not in seen -%}
                {%- do todo.append(parent) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set parts = [] -%}
    {%- for uid in seen | sort -%}
        {%- do parts.append(uid ~ '=' ~ graph.nodes[uid].checksum.checksum) -%}
    {%- endfor -%}
    {%- do parts.append('macros=' ~ var('macros_version', '')) -%}
    {%- do parts.append(kept_rows_options().settings) -%}
    {{ return(local_md5(parts | join('\n'))[:15] | int(0, 16)) }}
{%- endmacro %}
