-- Owns each customer's activity spells for the retention metrics. A customer is active on
-- day x when a purchase day (a non-cancelled order) falls in [x - A + 1, x], A = var
-- retention_active_days; their purchase days merge into disjoint spells
-- [first day, last day + A - 1] (a new spell starts after a gap of more than A days).
-- Besides the bounds, each spell carries the revenue sums retention_metrics needs, all
-- independent of the run date: its revenue in the month and in the quarter it starts,
-- and in the A days before the start of the month and of the quarter holding its
-- churn day (the day after it ends).
{#- Kept between runs (macros/kept/): a run recomputes only the spells of the customers
    of the orders int_orders recomputes; a backfill, a change to this model, to anything
    upstream or to A, or --full-refresh recomputes all. -#}
{{ config(**kept_rows_config('customers', 'retention_active_days=' ~ var('retention_active_days'))) }}
{%- set active_days = var('retention_active_days') | int %}

with purchase_days as (
    select customer_id, order_date, sum(net_revenue) as net_revenue
    from {{ ref('int_orders') }}
    where is_purchase
      and {{ kept_rows_changed() }}
    group by customer_id, order_date
),

spell_starts as (
    select
        customer_id,
        order_date,
        net_revenue,
        case
            when lag(order_date) over (partition by customer_id order by order_date) is null then 1
            when {{ crm_days_between('lag(order_date) over (partition by customer_id order by order_date)', 'order_date') }}
                > {{ active_days }} then 1
            else 0
        end as is_spell_start
    from purchase_days
),

-- every purchase day with the number of its spell (1 = the customer's first)
numbered as (
    select
        customer_id,
        order_date,
        net_revenue,
        sum(is_spell_start) over (partition by customer_id order by order_date rows unbounded preceding) as spell_no
    from spell_starts
),

spell_bounds as (
    select
        customer_id,
        spell_no,
        min(order_date) as spell_start,
        {{ crm_add_days('max(order_date)', active_days - 1) }} as spell_end
    from numbered
    group by customer_id, spell_no
),

spells as (
    select
        customer_id,
        spell_no,
        spell_start,
        spell_end,
        {{ crm_add_days('spell_end', 1) }} as churn_day,
        lag(spell_start) over (partition by customer_id order by spell_no) as prior_spell_start,
        lag(spell_end) over (partition by customer_id order by spell_no) as prior_spell_end,
        lead(spell_start) over (partition by customer_id order by spell_no) as next_spell_start,
        {{ crm_month_start('spell_start') }} as start_month,
        {{ crm_quarter_start('spell_start') }} as start_quarter,
        {{ crm_month_start(crm_add_days('spell_end', 1)) }} as churn_month,
        {{ crm_quarter_start(crm_add_days('spell_end', 1)) }} as churn_quarter
    from spell_bounds
),

spell_revenue as (
    select
        numbered.customer_id,
        numbered.spell_no,
        sum(case when numbered.order_date < {{ crm_add_months('spells.start_month', 1) }}
            then numbered.net_revenue else 0 end) as first_month_revenue,
        sum(case when numbered.order_date < {{ crm_add_months('spells.start_quarter', 3) }}
            then numbered.net_revenue else 0 end) as first_quarter_revenue,
        sum(case when numbered.order_date >= {{ crm_add_days('spells.churn_month', -active_days) }}
             and numbered.order_date < spells.churn_month then numbered.net_revenue else 0 end) as lost_month_revenue,
        sum(case when numbered.order_date >= {{ crm_add_days('spells.churn_quarter', -active_days) }}
             and numbered.order_date < spells.churn_quarter then numbered.net_revenue else 0 end) as lost_quarter_revenue
    from numbered
    inner join spells
        on numbered.customer_id = spells.customer_id
        and numbered.spell_no = spells.spell_no
    group by numbered.customer_id, numbered.spell_no
),

final as (
    select
        spells.customer_id,
        cast(spells.spell_no as integer) as spell_no,
        spells.spell_start,
        spells.spell_end,
        spells.churn_day,
        spells.prior_spell_start,
        spells.prior_spell_end,
        spells.next_spell_start,
        cast(spell_revenue.first_month_revenue as numeric(18, 2)) as first_month_revenue,
        cast(spell_revenue.first_quarter_revenue as numeric(18, 2)) as first_quarter_revenue,
        cast(spell_revenue.lost_month_revenue as numeric(18, 2)) as lost_month_revenue,
        cast(spell_revenue.lost_quarter_revenue as numeric(18, 2)) as lost_quarter_revenue
    from spells
    inner join spell_revenue
        on spells.customer_id = spell_revenue.customer_id
        and spells.spell_no = spell_revenue.spell_no
)

{{ kept_rows_select('final') }}
