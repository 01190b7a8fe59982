-- Owns the evidence that the lifetime-value model predicts (docs/rules.md "Lifetime
-- value"): on the nights that check it (CRM_CLV_VALIDATE_DAY, or after crm clv validate),
-- one row per calibration-frequency group and a row 'all' with customers, actual and
-- predicted mean repeat purchases in the holdout, the mean absolute error per customer,
-- the aggregate error, and the same for spend per purchase day. Zero rows on the other
-- nights: the history keeps the last checks. Model outputs are rounded to fixed decimals
-- so that DuckDB and PostgreSQL publish identical rows.
with diagnostics as (
    select *
    from {{ ref('stg_clv__diagnostics') }}
    where as_of = {{ as_of_date() }}
),

final as (
    select
        cast(as_of as date) as as_of,
        cast(frequency_group as {{ crm_type_string() }}) as frequency_group,
        cast(group_order as integer) as group_order,
        cast(calibration_end as date) as calibration_end,
        cast(holdout_weeks as integer) as holdout_weeks,
        cast(fit_status as {{ crm_type_string() }}) as fit_status,
        cast(customers as integer) as customers,
        cast(actual_purchases_mean as numeric(18, 6)) as actual_purchases_mean,
        cast(predicted_purchases_mean as numeric(18, 6)) as predicted_purchases_mean,
        cast(purchases_mae as numeric(18, 6)) as purchases_mae,
        cast(purchases_aggregate_error as numeric(18, 6)) as purchases_aggregate_error,
        cast(spend_customers as integer) as spend_customers,
        cast(actual_spend_mean as numeric(18, 2)) as actual_spend_mean,
        cast(predicted_spend_mean as numeric(18, 2)) as predicted_spend_mean,
        cast(spend_mae as numeric(18, 2)) as spend_mae,
        cast(spend_aggregate_error as numeric(18, 6)) as spend_aggregate_error
    from diagnostics
)

select * from final
