-- The CLV step's predictions, one row per buying customer per as_of with an 'ok' fit, as
-- the step wrote them. Built with the marts, like stg_clv__fits.
with source as (
    select * from {{ source('clv', 'clv_predictions') }}
),

final as (
    select
        as_of,
        customer_id,
        frequency,
        recency,
        t,
        monetary_value,
        margin_share,
        prob_alive,
        expected_purchases_90d,
        expected_purchases_365d,
        expected_avg_order_value,
        clv_12m,
        prob_alive_90d,
        prob_alive_p10,
        prob_alive_p90,
        clv_12m_p10,
        clv_12m_p90
    from source
)

select * from final
