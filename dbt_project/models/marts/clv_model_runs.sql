-- Owns the record of the CLV model fitted for the run date: the fitted parameters,
-- log-likelihood, number of customers and fit time, stored per as_of so that a drift of
-- the model is visible. One row for this as_of from the CLV step's fits
-- (stg_clv__fits), whatever the status: a fit that did not converge, hit a bound or had
-- too few repeat buyers is recorded here with null or unusable parameters and its
-- message. Published as a history table keyed by as_of. Zero rows only when the CLV step
-- never ran for this date.
with fit as (
    select *
    from {{ ref('stg_clv__fits') }}
    where as_of = {{ as_of_date() }}
),

final as (
    select
        cast(as_of as date) as as_of,
        cast(status as {{ crm_type_string() }}) as status,
        cast(status = 'ok' as boolean) as is_usable,
        cast(coalesce(converged, false) as boolean) as is_converged,
        cast(message as {{ crm_type_string() }}) as message,
        cast(time_unit as {{ crm_type_string() }}) as time_unit,
        cast(n_customers as integer) as n_customers,
        cast(n_repeat_buyers as integer) as n_repeat_buyers,
        cast(r as numeric(24, 10)) as r,
        cast(alpha as numeric(24, 10)) as alpha,
        cast(a as numeric(24, 10)) as a,
        cast(b as numeric(24, 10)) as b,
        cast(p as numeric(24, 10)) as p,
        cast(q as numeric(24, 10)) as q,
        cast(gamma as numeric(24, 10)) as gamma,
        cast(bgnbd_log_likelihood as numeric(24, 6)) as bgnbd_log_likelihood,
        cast(gg_log_likelihood as numeric(24, 6)) as gg_log_likelihood,
        cast(annual_discount_rate as numeric(9, 6)) as annual_discount_rate,
        cast(min_repeat_buyers as integer) as min_repeat_buyers,
        cast(fit_seconds as numeric(12, 3)) as fit_seconds,
        cast(se_r as numeric(24, 10)) as se_r,
        cast(se_alpha as numeric(24, 10)) as se_alpha,
        cast(se_a as numeric(24, 10)) as se_a,
        cast(se_b as numeric(24, 10)) as se_b,
        cast(se_p as numeric(24, 10)) as se_p,
        cast(se_q as numeric(24, 10)) as se_q,
        cast(se_gamma as numeric(24, 10)) as se_gamma
    from fit
)

select * from final
