{#- The run's logical date and the first instant after it. A row version belongs to
    as_of = D when it was changed before D + 1 day and it had reached the warehouse by D
    (`_visible_from`, set by extraction). Computed in Jinja so the SQL is portable. -#}
{% macro as_of_date() -%}
    cast('{{ var("as_of") }}' as date)
{%- endmacro %}

{% macro as_of_end() -%}
    {%- set d = modules.datetime.date.fromisoformat(var("as_of") | string) + modules.datetime.timedelta(days=1) -%}
    cast('{{ d.isoformat() }}' as timestamp)
{%- endmacro %}

{#- Latest version of each key known as of the run date, soft-deleted keys removed. -#}
{% macro latest_as_of(relation, key) -%}
    select *
    from (
        select
            src.*,
            row_number() over (
                partition by src.{{ key }}
                order by src.updated_at desc, src._loaded_at desc, src._batch_id desc
            ) as _version_rank
        from {{ relation }} as src
        where src._visible_from <= {{ as_of_date() }}
          and src.updated_at < {{ as_of_end() }}
    ) as versions
    where _version_rank = 1
      and not coalesce(is_deleted, false)
{%- endmacro %}
