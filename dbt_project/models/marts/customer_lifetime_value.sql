-- Owns the lifetime value of every buying customer as of the run date:
-- historical value from int_customer_order_summary and the predicted value that the CLV
-- step (crm_pipeline.clv_step) wrote for THIS as_of into the source clv.clv_predictions.
--
-- One row per buying customer when the fit of this as_of has status 'ok'. When the fit
-- failed (not converged, hit a bound, too few repeat buyers) the step writes no
-- predictions for the date and this model has ZERO rows: the publish step then replaces
-- nothing (published.customer_lifetime_value is keyed by as_of), so the CLV published
-- for earlier dates stays in place.
--
-- prob_purchase_90d, the probability of at least one purchase in the next h = 90 days
-- (the purchase-likelihood score of customer_segments): a customer alive at T buys as a
-- Poisson process whose rate has the posterior Gamma(r + x, alpha + T), and cannot drop
-- out before a purchase, so
--     P(no purchase in (T, T + h] | alive) = ((alpha + T) / (alpha + T + h)) ^ (r + x)
--     prob_purchase_90d = P(alive) * (1 - ((alpha + T) / (alpha + T + h)) ^ (r + x))
-- with h, T and alpha in the fit's time unit (90 days = 90 / 7 weeks).
-- prob_alive_90d is P(alive) 90 days from now if no purchase happens until then; the
-- p10/p90 columns are the 10th-90th percentile bands from the fit's parameter uncertainty
-- (crm_pipeline.clv.uncertainty, docs/rules.md "Lifetime value").
-- Model outputs are rounded to fixed decimals (numeric) so that DuckDB and PostgreSQL
-- publish identical rows.
with fit as (
    select *
    from {{ ref('stg_clv__fits') }}
    where as_of = {{ as_of_date() }}
      and status = 'ok'
),

predictions as (
    select *
    from {{ ref('stg_clv__predictions') }}
    where as_of = {{ as_of_date() }}
),

summary as (
    select * from {{ ref('int_customer_order_summary') }}
    where order_days > 0
),

modelled as (
    select
        predictions.*,
        fit.time_unit,
        cast(fit.r as {{ crm_type_double() }}) as fit_r,
        cast(fit.alpha as {{ crm_type_double() }}) as fit_alpha,
        -- in double precision on every engine: a decimal 90.0 / 7.0 keeps six decimals on Spark
        cast(90 as {{ crm_type_double() }}) / case when fit.time_unit = 'days' then 1 else 7 end as horizon
    from predictions
    inner join fit on predictions.as_of = fit.as_of
),

final as (
    select
        cast(summary.customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        -- historical value
        cast(summary.first_order_date as date) as first_order_date,
        cast(summary.last_order_date as date) as last_order_date,
        cast(summary.order_days as integer) as order_days,
        cast(summary.total_net_revenue as numeric(18, 2)) as total_net_revenue,
        cast(summary.total_gross_margin as numeric(18, 2)) as total_gross_margin,
        cast(summary.tenure_days as integer) as tenure_days,
        cast(summary.age_days as integer) as customer_age_days,
        -- model inputs in the fit's time unit
        cast(modelled.time_unit as {{ crm_type_string() }}) as time_unit,
        cast(modelled.frequency as integer) as frequency,
        cast(modelled.recency as numeric(18, 6)) as recency,
        cast(modelled.t as numeric(18, 6)) as t,
        cast(modelled.monetary_value as numeric(18, 2)) as monetary_value,
        -- predictions
        cast(modelled.prob_alive as numeric(9, 6)) as prob_alive,
        cast(
            modelled.prob_alive * (
                1 - power(
                    (modelled.fit_alpha + modelled.t) / (modelled.fit_alpha + modelled.t + modelled.horizon),
                    modelled.fit_r + modelled.frequency
                )
            ) as numeric(9, 6)
        ) as prob_purchase_90d,
        cast(modelled.expected_purchases_90d as numeric(18, 6)) as expected_purchases_90d,
        cast(modelled.expected_purchases_365d as numeric(18, 6)) as expected_purchases_365d,
        cast(modelled.expected_avg_order_value as numeric(18, 2)) as expected_avg_order_value,
        cast(modelled.margin_share as numeric(9, 6)) as margin_share,
        cast(modelled.clv_12m as numeric(18, 2)) as clv_12m,
        cast(modelled.prob_alive_90d as numeric(9, 6)) as prob_alive_90d,
        cast(modelled.prob_alive_p10 as numeric(9, 6)) as prob_alive_p10,
        cast(modelled.prob_alive_p90 as numeric(9, 6)) as prob_alive_p90,
        cast(modelled.clv_12m_p10 as numeric(18, 2)) as clv_12m_p10,
        cast(modelled.clv_12m_p90 as numeric(18, 2)) as clv_12m_p90
    from modelled
    inner join summary on modelled.customer_id = summary.customer_id
)

select * from final
