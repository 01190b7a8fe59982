{#- The version of each key a credit grade reads: the latest version known at the end of
    data_through (latest_as_of's rule with the credit cut-off), with a column
    _reconstructed = false.

    The first night of a warehouse reads the source's whole history, and a version of
    that load is dated by its own updated_at: a row changed after the cut-off has no
    version from before it, although the row was there. When the warehouse's history of
    the table starts after the cut-off (its first load, the smallest _as_of in raw, is
    later than data_through), a key with no version known at the cut-off reads the
    earliest version of that first load instead, flagged _reconstructed = true (only the
    first load: a key that reached the warehouse later, say out of quarantine, waits for
    the next quarter, so every run inside the quarter computes the same grades). Later
    nights, whose history starts by the cut-off, read exactly latest_as_of's version.
    A version not visible by the run date (a suspect row waiting in raw) is never read.
    See docs/rules.md, "Grades from the first night". -#}
{% macro credit_versions_at_cutoff(relation, key) -%}
    select *
    from (
        select
            *,
            _known_at_cutoff = 0 as _reconstructed,
            row_number() over (
                partition by {{ key }}
                order by
                    _known_at_cutoff desc,
                    case when _known_at_cutoff = 1 then updated_at end desc nulls last,
                    case when _known_at_cutoff = 1 then _loaded_at end desc nulls last,
                    case when _known_at_cutoff = 1 then _batch_id end desc nulls last,
                    updated_at, _loaded_at, _batch_id
            ) as _version_rank
        from (
            select
                *,
                case
                    when _visible_from <= {{ credit_data_through() }} and updated_at < {{ credit_data_end() }} then 1
                    else 0
                end as _known_at_cutoff
            from {{ relation }}
            where _visible_from <= {{ as_of_date() }}
              and (
                  (_visible_from <= {{ credit_data_through() }} and updated_at < {{ credit_data_end() }})
                  or (
                      _as_of = (select min(_as_of) from {{ relation }})
                      and _as_of > {{ credit_data_through() }}
                  )
              )
        ) as candidates
    ) as versions
    where _version_rank = 1
      and not coalesce(is_deleted, false)
{%- endmacro %}
