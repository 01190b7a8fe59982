-- Owns the cohort retention triangle as of the run date (docs/rules.md "Acquisition
-- channels and cohorts"): one row per acquisition cohort (month of the first purchase),
-- acquisition channel and month since acquisition (0 = the cohort month) up to the month
-- holding the run date. A customer is active in a month when they bought in it; the
-- retention rate is active customers over the cohort's customers. The month holding the
-- run date is measured up to it (is_complete false unless the run date is its last day).
with buyers as (
    select * from {{ ref('int_acquisition_customers') }}
),

purchases as (
    select * from {{ ref('int_orders') }}
    where is_purchase
),

digits as (
    select * from (values (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) as d (n)
),

month_offsets as (
    select units.n + 10 * tens.n + 100 * hundreds.n as months_since
    from digits as units
    cross join digits as tens
    cross join digits as hundreds
),

run_month as (
    select
        cast(extract(year from {{ as_of_date() }}) * 12 + extract(month from {{ as_of_date() }}) as integer)
            as month_index,
        extract(day from {{ crm_add_days(as_of_date(), 1) }}) = 1 as run_date_ends_month
),

cohorts as (
    select
        cohort_month,
        cohort_month_index,
        acquisition_channel,
        count(*) as cohort_customers
    from buyers
    group by cohort_month, cohort_month_index, acquisition_channel
),

active_months as (
    select distinct
        purchases.customer_id,
        cast(extract(year from purchases.order_date) * 12 + extract(month from purchases.order_date) as integer)
            as month_index
    from purchases
),

activity as (
    select
        buyers.cohort_month_index,
        buyers.acquisition_channel,
        active_months.month_index - buyers.cohort_month_index as months_since,
        count(*) as active_customers
    from active_months
    inner join buyers on active_months.customer_id = buyers.customer_id
    group by buyers.cohort_month_index, buyers.acquisition_channel, active_months.month_index - buyers.cohort_month_index
),

final as (
    select
        cast(cohorts.cohort_month as date) as cohort_month,
        cast(cohorts.acquisition_channel as {{ crm_type_string() }}) as acquisition_channel,
        cast(month_offsets.months_since as integer) as months_since_acquisition,
        cast({{ as_of_date() }} as date) as as_of,
        cast(cohorts.cohort_customers as integer) as cohort_customers,
        cast(coalesce(activity.active_customers, 0) as integer) as active_customers,
        cast(1.0 * coalesce(activity.active_customers, 0) / cohorts.cohort_customers as numeric(9, 6))
            as retention_rate,
        cast(
            cohorts.cohort_month_index + month_offsets.months_since < run_month.month_index
            or run_month.run_date_ends_month
            as boolean
        ) as is_complete
    from cohorts
    cross join run_month
    inner join month_offsets
        on cohorts.cohort_month_index + month_offsets.months_since <= run_month.month_index
    left join activity
        on cohorts.cohort_month_index = activity.cohort_month_index
        and cohorts.acquisition_channel = activity.acquisition_channel
        and month_offsets.months_since = activity.months_since
)

select * from final
