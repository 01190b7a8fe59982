-- Owns the value of every acquisition channel as of the run date (docs/rules.md
-- "Acquisition channels and cohorts"): one row per channel with its customers, retention
-- 1, 3, 6 and 12 months after acquisition over the cohorts whose month is complete
-- (active customers over those cohorts' customers; null when no cohort is old enough),
-- and revenue, profit and predicted 12-month CLV per customer.
{%- set retention_months = [1, 3, 6, 12] %}

with buyers as (
    select * from {{ ref('int_acquisition_customers') }}
),

triangle as (
    select * from {{ ref('acquisition_cohort_retention') }}
),

channel_values as (
    select
        acquisition_channel,
        count(*) as customers_acquired,
        sum(revenue_to_date) as revenue_to_date,
        sum(profit_to_date) as profit_to_date,
        count(clv_12m) as customers_with_clv,
        sum(clv_12m) as clv_12m_total
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
        cast(channel_values.acquisition_channel as varchar) as acquisition_channel,
        cast({{ as_of_date() }} as date) as as_of,
        cast(channel_values.customers_acquired as integer) as customers_acquired,
        {%- for k in retention_months %}
        cast(retention.retention_m{{ k }} as numeric(9, 6)) as retention_m{{ k }},
        {%- endfor %}
        cast(channel_values.revenue_to_date as numeric(18, 2)) as revenue_to_date,
        cast(channel_values.profit_to_date as numeric(18, 2)) as profit_to_date,
        {{ value_money_ratio('channel_values.revenue_to_date', 'channel_values.customers_acquired') }} as revenue_per_customer,
        {{ value_money_ratio('channel_values.profit_to_date', 'channel_values.customers_acquired') }} as profit_per_customer,
        cast(channel_values.customers_with_clv as integer) as customers_with_clv,
        cast(case when channel_values.customers_with_clv > 0
            then {{ value_money_ratio('channel_values.clv_12m_total', 'channel_values.customers_with_clv') }}
        end as numeric(18, 2)) as clv_12m_per_customer
    from channel_values
    left join retention on channel_values.acquisition_channel = retention.acquisition_channel
)

select * from final
