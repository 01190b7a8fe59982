{#- Latest version of each key known at a cut-off, soft-deleted keys removed: versions
    that had reached the warehouse by `cutoff_date` (_visible_from) and were changed
    before `cutoff_end`. By default the cut-off is the run date; the credit snapshot
    models pass the end of the previous quarter, so later payments, returns and revised
    statements never change a published grade. `relation` holds every version with its
    bookkeeping columns (a staging versions model, or a CTE selecting from one). No table
    alias: dbt's --empty mode replaces the relation with an aliased subquery. -#}
{% macro latest_as_of(relation, key, cutoff_date=none, cutoff_end=none) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ key }}
                order by updated_at desc, _loaded_at desc, _batch_id desc
            ) as _version_rank
        from {{ relation }}
        where _visible_from <= {{ cutoff_date or as_of_date() }}
          and updated_at < {{ cutoff_end or as_of_end() }}
    ) as versions
    where _version_rank = 1
      and not coalesce(is_deleted, false)
{%- endmacro %}
