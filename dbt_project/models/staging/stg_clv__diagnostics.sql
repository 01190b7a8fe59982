-- The CLV step's holdout checks, one row per frequency group per checked as_of, as
-- crm_pipeline.clv_validation wrote them. Built with the marts, like stg_clv__fits.
with source as (
    select * from {{ source('clv', 'clv_diagnostics') }}
),

final as (
    select
        as_of,
        run_id,
        calibration_end,
        holdout_weeks,
        fit_status,
        fit_message,
        frequency_group,
        group_order,
        customers,
        actual_purchases_mean,
        predicted_purchases_mean,
        purchases_mae,
        purchases_aggregate_error,
        spend_customers,
        actual_spend_mean,
        predicted_spend_mean,
        spend_mae,
        spend_aggregate_error
    from source
)

select * from final
