-- Owns the value of every acquisition cohort per channel as of the run date (docs/rules.md
-- "Acquisition channels and cohorts"): one row per cohort month and acquisition channel
-- with its customers, retention 1, 3, 6 and 12 months after the cohort month (from
-- acquisition_cohort_retention; null until that month is complete), revenue and profit to
-- date, and revenue, profit and predicted 12-month CLV per customer (the CLV mean over
-- the cohort's customers with a prediction of this as_of).
{%- set retention_months = [1, 3, 6, 12] %}

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
        count(*) as customers_acquired,
        sum(revenue_to_date) as revenue_to_date,
        sum(profit_to_date) as profit_to_date,
        count(clv_12m) as customers_with_clv,
        sum(clv_12m) as clv_12m_total
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
        cast(cohort_values.acquisition_channel as varchar) as acquisition_channel,
        cast({{ as_of_date() }} as date) as as_of,
        cast(cohort_values.customers_acquired as integer) as customers_acquired,
        {%- for k in retention_months %}
        cast(retention.retention_m{{ k }} as numeric(9, 6)) as retention_m{{ k }},
        {%- endfor %}
        cast(cohort_values.revenue_to_date as numeric(18, 2)) as revenue_to_date,
        cast(cohort_values.profit_to_date as numeric(18, 2)) as profit_to_date,
        {{ value_money_ratio('cohort_values.revenue_to_date', 'cohort_values.customers_acquired') }} as revenue_per_customer,
        {{ value_money_ratio('cohort_values.profit_to_date', 'cohort_values.customers_acquired') }} as profit_per_customer,
        cast(cohort_values.customers_with_clv as integer) as customers_with_clv,
        cast(case when cohort_values.customers_with_clv > 0
            then {{ value_money_ratio('cohort_values.clv_12m_total', 'cohort_values.customers_with_clv') }}
        end as numeric(18, 2)) as clv_12m_per_customer
    from cohort_values
    left join retention
        on cohort_values.cohort_month = retention.cohort_month
        and cohort_values.acquisition_channel = retention.acquisition_channel
)

select * from final
