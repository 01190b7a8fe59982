-- Owns the value of every acquisition cohort per channel as of the run date (docs/rules.md
-- "Acquisition channels and cohorts"): one row per cohort month and acquisition channel
-- with its customers, retention 1, 3, 6 and 12 months after the cohort month (from
-- acquisition_cohort_retention; null until that month is complete), revenue and profit to
-- date, and revenue, profit and predicted 12-month CLV per customer (the CLV mean over
-- the cohort's customers with a prediction of this as_of).
{%- set retention_months = acquisition_retention_months() %}

with buyers as (
    select * from {{ ref('int_acquisition_customers') }}
),

triangle as (
    select * from {{ ref('acquisition_cohort_retention') }}
),

cohort_values as (
    select
        cohort_month,
        acquisition_channel,
        {{ acquisition_value_sums() }}
    from buyers
    group by cohort_month, acquisition_channel
),

retention as (
    select
        cohort_month,
        acquisition_channel,
        {%- for k in retention_months %}
        max(case when months_since_acquisition = {{ k }} and is_complete then retention_rate end)
            as retention_m{{ k }}{{ ',' if not loop.last }}
        {%- endfor %}
    from triangle
    group by cohort_month, acquisition_channel
),

final as (
    select
        cast(cohort_values.cohort_month as date) as cohort_month,
        cast(cohort_values.acquisition_channel as {{ crm_type_string() }}) as acquisition_channel,
        {{ acquisition_value_columns('cohort_values', 'retention') }}
    from cohort_values
    left join retention
        on cohort_values.cohort_month = retention.cohort_month
        and cohort_values.acquisition_channel = retention.acquisition_channel
)

select * from final
