-- Owns the RFM scores and the named RFM segment of every customer as of the run date.
-- Scores are quintiles among buying customers (order_days > 0), 5 = best, from rank()
-- so that equal values share a score (macro value_rank_score). Customers without any
-- purchase are 'Prospects' with null scores.
with summary as (
    select * from {{ ref('int_customer_order_summary') }}
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

buyers as (
    select
        customer_id,
        recency_days,
        order_days,
        trailing_net_revenue as monetary,
        trailing_orders,
        count(*) over () as buyers
    from summary
    where order_days > 0
),

scored as (
    select
        customer_id,
        -- worst first: oldest last purchase, fewest purchase days, lowest spend
        {{ value_rank_score('recency_days desc', 'buyers') }} as r_score,
        {{ value_rank_score('order_days asc', 'buyers') }} as f_score,
        {{ value_rank_score('monetary asc', 'buyers') }} as m_score
    from buyers
),

final as (
    select
        summary.customer_id,
        summary.as_of,
        summary.recency_days,
        summary.order_days as frequency,
        cast(summary.trailing_net_revenue as numeric(18, 2)) as monetary,
        case when summary.trailing_orders > 0
            then {{ value_money_ratio('summary.trailing_net_revenue', 'summary.trailing_orders') }}
        end as avg_order_value,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        cast(
            case when scored.customer_id is not null
                then cast(scored.r_score as {{ crm_type_string() }}) || cast(scored.f_score as {{ crm_type_string() }}) || cast(scored.m_score as {{ crm_type_string() }})
            end as {{ crm_type_string() }}
        ) as rfm_code,
        cast(
            case when scored.customer_id is null then 'Prospects' else segment_map.rfm_segment end
            as {{ crm_type_string() }}
        ) as rfm_segment
    from summary
    left join scored on summary.customer_id = scored.customer_id
    left join segment_map
        on scored.r_score = segment_map.r_score
       and scored.f_score = segment_map.f_score
)

select * from final
