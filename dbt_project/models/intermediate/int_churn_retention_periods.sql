-- Owns the reporting periods of the retention metrics: every calendar month and quarter
-- from the one holding the first purchase up to the one holding the run date. A period
-- is measured up to its last day, or up to the run date for the current (incomplete)
-- period. prior_period_start .. prior_measured_through is the equivalent window just
-- before it (the whole prior period, or as many elapsed days for the current period).
-- Generated from a digits cross join (no recursive SQL, so the mart stays unit-testable).
with purchases as (
    select * from {{ ref('int_orders') }}
    where is_purchase
),

bounds as (
    select min(order_date) as first_order_date from purchases
),

digits as (
    {%- for d in range(10) %}
    select {{ d }} as d{{ ' union all' if not loop.last }}
    {%- endfor %}
),

offsets as (
    select hundreds.d * 100 + tens.d * 10 + ones.d as n
    from digits as hundreds
    cross join digits as tens
    cross join digits as ones
),

candidates as (
    {%- for period_type, months in [('month', 1), ('quarter', 3)] %}
    {%- set first_period = crm_month_start('bounds.first_order_date') if period_type == 'month'
        else crm_quarter_start('bounds.first_order_date') %}
    select
        cast('{{ period_type }}' as varchar(8)) as period_type,
        {{ crm_add_months(first_period, 'offsets.n * ' ~ months) }} as period_start,
        {{ crm_add_months(first_period, '(offsets.n - 1) * ' ~ months) }} as prior_period_start,
        {{ crm_add_months(first_period, '(offsets.n + 1) * ' ~ months) }} as next_period_start
    from bounds
    cross join offsets
    where bounds.first_order_date is not null
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

final as (
    select
        period_type,
        period_start,
        prior_period_start,
        {{ crm_add_days('next_period_start', -1) }} as period_end,
        case
            when {{ crm_add_days('next_period_start', -1) }} <= {{ as_of_date() }}
                then {{ crm_add_days('next_period_start', -1) }}
            else {{ as_of_date() }}
        end as measured_through,
        {{ crm_add_days('next_period_start', -1) }} <= {{ as_of_date() }} as is_complete,
        -- the comparison window in the prior period: all of it for a complete period; for
        -- the current period the same number of elapsed days (so a half month compares
        -- with the first half of the month before)
        case
            when {{ crm_add_days('next_period_start', -1) }} <= {{ as_of_date() }}
                then {{ crm_add_days('period_start', -1) }}
            else least(
                {{ crm_add_days('prior_period_start', crm_days_between('period_start', as_of_date())) }},
                {{ crm_add_days('period_start', -1) }}
            )
        end as prior_measured_through
    from candidates
    where period_start <= {{ as_of_date() }}
)

select * from final
