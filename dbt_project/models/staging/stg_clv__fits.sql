-- The CLV step's fits, one row per as_of, as the step wrote them (crm_pipeline.clv_step,
-- between the dbt staging and marts stages). Built with the marts: its source is
-- declared with them (models/marts/__clv_sources.yml), so the marts stage, which runs
-- after the fit, selects this view as a descendant of the source.
with source as (
    select * from {{ source('clv', 'clv_fit') }}
),

final as (
    select
        as_of,
        run_id,
        status,
        message,
        converged,
        r,
        alpha,
        a,
        b,
        p,
        q,
        gamma,
        bgnbd_log_likelihood,
        gg_log_likelihood,
        time_unit,
        n_customers,
        n_repeat_buyers,
        annual_discount_rate,
        min_repeat_buyers,
        fit_seconds,
        fitted_at,
        se_r,
        se_alpha,
        se_a,
        se_b,
        se_p,
        se_q,
        se_gamma
    from source
)

select * from final
