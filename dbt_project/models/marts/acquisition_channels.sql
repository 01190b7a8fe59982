-- Owns the value of every acquisition channel as of the run date (docs/rules.md
-- "Acquisition channels and cohorts"): one row per channel with its customers, retention
-- 1, 3, 6 and 12 months after acquisition over the cohorts whose month is complete
-- (active customers over those cohorts' customers; null when no cohort is old enough),
-- and revenue, profit and predicted 12-month CLV per customer.
{%- set retention_months = acquisition_retention_months() %}

with buyers as (
    select * from {{ ref('int_acquisition_customers') }}
),

triangle as (
    select * from {{ ref('acquisition_cohort_retention') }}
),

channel_values as (
    select
        acquisition_channel,
        {{ acquisition_value_sums() }}
    from buyers
    group by acquisition_channel
),

retention as (
    select
        acquisition_channel,
        {%- for k in retention_months %}
        1.0 * sum(case when months_since_acquisition = {{ k }} and is_complete then active_customers end)
            / nullif(sum(case when months_since_acquisition = {{ k }} and is_complete then cohort_customers end), 0)
            as retention_m{{ k }}{{ ',' if not loop.last }}
        {%- endfor %}
    from triangle
    group by acquisition_channel
),

final as (
    select
        cast(channel_values.acquisition_channel as {{ crm_type_string() }}) as acquisition_channel,
        {{ acquisition_value_columns('channel_values', 'retention') }}
    from channel_values
    left join retention on channel_values.acquisition_channel = retention.acquisition_channel
)

select * from final
