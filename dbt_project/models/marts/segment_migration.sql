-- Owns the segment migration matrix between the previous published as_of and this run:
-- one row per (from_segment, to_segment) pair that has customers.
--
-- The previous segments come from published.customer_segment_history, written by the
-- publish step (not dbt), at the latest as_of before this run's as_of (so a backfill
-- compares with the date published just before it, not with the newest one). When that
-- table does not exist yet or holds no earlier as_of (first run), the model has no rows.
-- A customer absent from the previous as_of appears with from_segment '(new customer)';
-- a previously published customer no longer in stg_crm__customers appears with
-- to_segment '(no longer a customer)'. Moved shares count only customers present on
-- both dates.
{%- set new_label = "(new customer)" %}
{%- set gone_label = "(no longer a customer)" %}
{%- set published = none %}
{%- if execute %}
    {%- set published = adapter.get_relation(
        database=target.database, schema='published', identifier='customer_segment_history') %}
{%- endif %}

with current_segments as (
    select customer_id, segment from {{ ref('customer_segments') }}
),

{% if published is not none -%}
previous_history as (
    select
        cast(customer_id as bigint) as customer_id,
        cast(as_of as date) as as_of,
        cast(segment as {{ crm_type_string() }}) as segment
    from {{ published }}
    where cast(as_of as date) < {{ as_of_date() }}
),
{%- else -%}
previous_history as (
    select
        cast(null as bigint) as customer_id,
        cast(null as date) as as_of,
        cast(null as {{ crm_type_string() }}) as segment
    where 1 = 0
),
{%- endif %}

previous_run as (
    select max(as_of) as previous_as_of from previous_history
),

previous_segments as (
    select previous_history.customer_id, previous_history.segment
    from previous_history
    inner join previous_run on previous_history.as_of = previous_run.previous_as_of
),

pairs as (
    select
        coalesce(previous_segments.segment, '{{ new_label }}') as from_segment,
        coalesce(current_segments.segment, '{{ gone_label }}') as to_segment,
        previous_segments.customer_id is not null and current_segments.customer_id is not null
            as is_on_both_dates
    from current_segments
    full outer join previous_segments on current_segments.customer_id = previous_segments.customer_id
),

matrix as (
    select
        from_segment,
        to_segment,
        max(case when is_on_both_dates then 1 else 0 end) = 1 as is_on_both_dates,
        count(*) as customers
    from pairs
    group by from_segment, to_segment
),

from_totals as (
    select
        from_segment,
        sum(case when is_on_both_dates then customers else 0 end) as stayed_customers,
        sum(case when is_on_both_dates and from_segment <> to_segment then customers else 0 end) as moved_customers
    from matrix
    group by from_segment
),

overall as (
    select
        sum(case when is_on_both_dates then customers else 0 end) as stayed_customers,
        sum(case when is_on_both_dates and from_segment <> to_segment then customers else 0 end) as moved_customers
    from matrix
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(previous_run.previous_as_of as date) as previous_as_of,
        cast(matrix.from_segment as {{ crm_type_string() }}) as from_segment,
        cast(matrix.to_segment as {{ crm_type_string() }}) as to_segment,
        cast(matrix.customers as integer) as customers,
        cast(matrix.is_on_both_dates and matrix.from_segment <> matrix.to_segment as boolean) as is_moved,
        cast(
            case when from_totals.stayed_customers > 0
                then cast(from_totals.moved_customers as numeric(18, 6)) / from_totals.stayed_customers
            end as numeric(18, 6)
        ) as from_segment_moved_share,
        cast(
            case when overall.stayed_customers > 0
                then cast(overall.moved_customers as numeric(18, 6)) / overall.stayed_customers
            end as numeric(18, 6)
        ) as overall_moved_share
    from matrix
    inner join from_totals on matrix.from_segment = from_totals.from_segment
    cross join overall
    inner join previous_run on previous_run.previous_as_of is not null
)

select * from final
