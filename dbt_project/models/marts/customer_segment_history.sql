-- Owns the history row of this run: the segment of every customer for this as_of only.
-- The publish step appends it to published.customer_segment_history keyed by as_of
-- (replacing the rows of a re-run or backfilled as_of), so the published table answers
-- "what segment was customer X in on date D".
with segments as (
    select * from {{ ref('customer_segments') }}
),

final as (
    select
        customer_id,
        as_of,
        segment,
        value_tier,
        rfm_segment,
        credit_grade,
        is_dormant
    from segments
)

select * from final
