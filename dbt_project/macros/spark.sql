{#- Spark SQL's variants of the cross-database macros (cross_database.sql), and the two
    places where dbt hands Spark a type name written in a model's or a seed's yml.
    What Spark does differently is listed in the README's warehouse table. -#}

{% macro spark__crm_type_string() -%}
    {{ return('string') }}
{%- endmacro %}

{% macro spark__crm_type_double() -%}
    {{ return('double') }}
{%- endmacro %}

{% macro spark__crm_deletes_rows() -%}
    {{ return(false) }}
{%- endmacro %}

{% macro spark__crm_digits_only(expr) -%}
    regexp_replace({{ expr }}, '[^0-9]', '')
{%- endmacro %}

{% macro spark__crm_days_between(start_date, end_date) -%}
    datediff(cast({{ end_date }} as date), cast({{ start_date }} as date))
{%- endmacro %}

{% macro spark__crm_add_days(date_expr, n) -%}
    date_add(cast({{ date_expr }} as date), cast({{ n }} as integer))
{%- endmacro %}

{% macro spark__crm_add_months(date_expr, n) -%}
    add_months(cast({{ date_expr }} as date), cast({{ n }} as integer))
{%- endmacro %}

{% macro spark__crm_hours_between(start_ts, end_ts) -%}
    {#- microseconds, as on the other engines: no fraction of a second is lost -#}
    cast(
        cast(unix_micros(cast({{ end_ts }} as timestamp)) - unix_micros(cast({{ start_ts }} as timestamp)) as decimal(38, 6))
        / 3600000000 as decimal(18, 4))
{%- endmacro %}

{% macro spark__crm_sha256_hex(expr) -%}
    sha2(cast({{ expr }} as string), 256)
{%- endmacro %}

{#- A yml type name as Spark spells it: a varchar without a length is a string, a double
    precision a double; every other name is the same on all three engines. -#}
{% macro crm_spark_type_name(data_type) -%}
    {%- set name = (data_type or '') | trim | lower -%}
    {%- if name == 'varchar' -%}
        {{ return('string') }}
    {%- elif name == 'double precision' -%}
        {{ return('double') }}
    {%- endif -%}
    {{ return(data_type) }}
{%- endmacro %}

{#- Contracts: the yml's column types are cast in an empty query whose schema is compared
    with the model's; the types are spelled the Spark way first. -#}
{% macro spark__get_empty_schema_sql(columns) -%}
    {%- set spelled = {} -%}
    {%- for name, column in columns.items() -%}
        {%- set copy = dict(column) -%}
        {%- if copy.get('data_type') -%}
            {%- do copy.update({'data_type': crm_spark_type_name(copy['data_type'])}) -%}
        {%- endif -%}
        {%- do spelled.update({name: copy}) -%}
    {%- endfor -%}
    {{ return(dbt.default__get_empty_schema_sql(spelled)) }}
{%- endmacro %}

{#- Seeds: the column types of seeds/_seeds.yml, spelled the Spark way before the table is
    created and its rows are cast (the load reads the same config). -#}
{% macro spark__create_csv_table(model, agate_table) -%}
    {%- set column_types = model['config'].get('column_types', {}) -%}
    {%- for name, data_type in column_types.items() -%}
        {%- do column_types.update({name: crm_spark_type_name(data_type)}) -%}
    {%- endfor -%}
    {{ return(dbt.spark__create_csv_table(model, agate_table)) }}
{%- endmacro %}

{#- Seeds' rows as literals. dbt-spark's session cursor pastes its bindings into the SQL
    unescaped (an apostrophe in a value breaks the statement, a null becomes the text
    'None'); here each value is written as a Spark literal and cast to its column's type. -#}
{% macro spark__load_csv_rows(model, agate_table) -%}
    {%- set column_types = model['config'].get('column_types', {}) -%}
    {%- set types = [] -%}
    {%- for name in agate_table.column_names -%}
        {%- do types.append(crm_spark_type_name(column_types.get(name, adapter.convert_type(agate_table, loop.index0)))) -%}
    {%- endfor -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
            ({%- for value in row -%}
                cast({{ crm_spark_literal(value) }} as {{ types[loop.index0] }}){{ ', ' if not loop.last }}
            {%- endfor -%}){{ ',' if not loop.last }}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- do statements.append(sql) if loop.first -%}
    {%- endfor -%}
    {{ return(statements[0] if statements else '') }}
{%- endmacro %}

{% macro crm_spark_literal(value) -%}
    {%- if value is none -%}
        null
    {%- elif value is sameas true or value is sameas false -%}
        {{ 'true' if value else 'false' }}
    {%- elif value is number -%}
        {{ value }}
    {%- else -%}
        '{{ (value | string).replace('\\', '\\\\').replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}
