-- Owns the raw values of the 20 credit-scorecard indicators: one row per customer that
-- existed on data_through (the last day of the quarter before the graded quarter), all
-- computed from data known at the end of that day. A null value means "missing": the
-- scorecard then scores the indicator's documented fallback (see seed credit_scorecard).
-- Windows (both ends included): behaviour window = var credit_window_days ending on
-- data_through; regularity window = var credit_regularity_window_days.
{#- Incremental per quarter: reused while its inputs are unchanged (macros/credit_snapshot.sql). -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='sync_all_columns',
          pre_hook="{{ credit_snapshot_reset() }}") }}
{%- set dates = credit_quarter_dates() %}
{%- set through = modules.datetime.date.fromisoformat(dates['data_through']) %}
{%- set window_start = (through - modules.datetime.timedelta(days=(var('credit_window_days') | int) - 1)).isoformat() %}
{%- set regularity_start = (through - modules.datetime.timedelta(days=(var('credit_regularity_window_days') | int) - 1)).isoformat() %}
{#- the quarter just ended (Q-1) and the one before it (Q-2), for revenue growth -#}
{%- set q1_start = quarter_start_date(through) %}
{%- set q2_start = quarter_start_date(q1_start - modules.datetime.timedelta(days=1)) %}

with customers as (
    select * from {{ ref('int_credit_customers_at_cutoff') }}
),

-- the snapshot models already stop at data_through; the business-date guards repeat it
orders as (
    select * from {{ ref('int_credit_orders_at_cutoff') }}
    where order_date <= {{ credit_data_through() }}
),

complaints as (
    select * from {{ ref('int_credit_complaints_at_cutoff') }}
    where opened_at < {{ credit_data_end() }}
),

contacts as (
    select * from {{ ref('int_credit_contacts_at_cutoff') }}
),

statements as (
    select * from {{ ref('int_credit_statements_at_cutoff') }}
),

-- invoices: placed or shipped orders whose invoice fell due by data_through; days past
-- due run to the payment date, or to data_through while unpaid
invoices as (
    select
        customer_id,
        invoice_due_date,
        gross_amount,
        written_off_amount,
        case
            when paid_at is not null and cast(paid_at as date) <= invoice_due_date then paid_amount
            else 0
        end as paid_on_time_amount,
        greatest(
            case
                when paid_at is not null then {{ crm_days_between('invoice_due_date', 'paid_at') }}
                else {{ crm_days_between('invoice_due_date', credit_data_through()) }}
            end,
            0
        ) as days_past_due
    from orders
    where is_invoiced
      and invoice_due_date <= {{ credit_data_through() }}
),

payment as (
    select
        customer_id,
        sum(case when invoice_due_date >= cast('{{ window_start }}' as date) then 1 else 0 end) as window_invoices,
        sum(case when invoice_due_date >= cast('{{ window_start }}' as date) then gross_amount else 0 end)
            as window_invoiced_amount,
        sum(case when invoice_due_date >= cast('{{ window_start }}' as date) then paid_on_time_amount else 0 end)
            as window_paid_on_time_amount,
        avg(case when invoice_due_date >= cast('{{ window_start }}' as date) then cast(days_past_due as decimal(18, 4)) end)
            as avg_days_past_due,
        max(case when invoice_due_date >= cast('{{ window_start }}' as date) then days_past_due end)
            as max_days_overdue,
        sum(case when invoice_due_date >= cast('{{ window_start }}' as date) and days_past_due > 0 then 1 else 0 end)
            as overdue_count,
        -- write-offs count over the whole history: a write-off is rare and weighs long
        sum(written_off_amount) as written_off_amount
    from invoices
    group by customer_id
),

receivables as (
    select
        customer_id,
        sum(greatest(gross_amount - paid_amount - written_off_amount, 0)) as open_receivables
    from orders
    where is_invoiced
    group by customer_id
),

window_orders as (
    select
        customer_id,
        sum(case when is_purchase then 1 else 0 end) as purchase_orders,
        count(distinct case when is_purchase then order_date end) as purchase_days,
        count(distinct case when is_purchase then product_category end) as product_categories,
        sum(case when is_invoiced then gross_amount - cost_amount else 0 end) as gross_margin
    from orders
    where order_date >= cast('{{ window_start }}' as date)
    group by customer_id
),

quarter_revenue as (
    select
        customer_id,
        sum(case when order_date >= cast('{{ q1_start.isoformat() }}' as date) then gross_amount else 0 end)
            as last_quarter_revenue,
        sum(case when order_date < cast('{{ q1_start.isoformat() }}' as date) then gross_amount else 0 end)
            as quarter_before_revenue
    from orders
    where is_invoiced
      and order_date >= cast('{{ q2_start.isoformat() }}' as date)
    group by customer_id
),

regularity_days as (
    select distinct customer_id, order_date
    from orders
    where is_purchase
      and order_date >= cast('{{ regularity_start }}' as date)
),

regularity_intervals as (
    select
        customer_id,
        {{ crm_days_between(
            'lag(order_date) over (partition by customer_id order by order_date)', 'order_date'
        ) }} as interval_days
    from regularity_days
),

regularity as (
    select
        customer_id,
        count(interval_days) as intervals,
        avg(cast(interval_days as decimal(18, 4))) as mean_interval,
        stddev_samp(cast(interval_days as decimal(18, 4))) as sd_interval
    from regularity_intervals
    where interval_days is not null
    group by customer_id
),

complaint_counts as (
    select
        customer_id,
        count(*) as complaints,
        sum(case when category = '{{ var("credit_dispute_category") }}' then 1 else 0 end) as disputes
    from complaints
    where opened_at >= cast('{{ window_start }}' as timestamp)
    group by customer_id
),

contact_quality as (
    select
        customer_id,
        count(*) as contacts,
        sum(case when has_email and has_phone and role in ('coach', 'user', 'technical', 'economic') then 1 else 0 end)
            as complete_contacts,
        count(distinct case when role in ('coach', 'user', 'technical', 'economic') then role end) as roles_covered
    from contacts
    group by customer_id
),

-- inputs read from a reconstructed version (no version known at the cut-off: the
-- earliest the warehouse holds, see macros/credit_versions_at_cutoff.sql), per customer
reconstructed_inputs as (
    select customer_id, 'customers' as input from customers where is_reconstructed
    union
    select customer_id, 'orders' as input from orders where is_reconstructed
    union
    select customer_id, 'complaints' as input from complaints where is_reconstructed
    union
    select customer_id, 'contacts' as input from contacts where is_reconstructed
    union
    select customer_id, 'financial_statements' as input from statements where is_reconstructed
),

reconstructed as (
    select
        customer_id,
        {%- for input in credit_input_names() %}
        max(case when input = '{{ input }}' then 1 else 0 end) = 1 as reconstructed_{{ input }}{{ ',' if not loop.last }}
        {%- endfor %}
    from reconstructed_inputs
    group by customer_id
),

{#- Each ratio divides in double precision on every engine: Spark's decimal division
    keeps six decimals, and the scorecard bins the exact value (docs/rules.md). -#}
final as (
    select
        customers.customer_id,
        {{ credit_grade_quarter() }} as grade_quarter,
        {{ credit_data_through() }} as data_through,
        statements.statement_id is not null as has_financial_statements,
        statements.period_end as statement_period_end,

        -- character / relationship quality
        cast({{ crm_days_between('customers.created_date', credit_data_through()) }} as {{ credit_indicator_type() }}) / 365.25
            as ind_years_as_customer,
        cast(case
            when coalesce(window_orders.purchase_orders, 0) > 0
                then 100 * cast(coalesce(complaint_counts.complaints, 0) as {{ credit_indicator_type() }}) / window_orders.purchase_orders
        end as {{ credit_indicator_type() }}) as ind_complaint_rate,
        cast(coalesce(complaint_counts.disputes, 0) as {{ credit_indicator_type() }}) as ind_dispute_count,
        cast(case
            when coalesce(contact_quality.contacts, 0) > 0
                then cast(contact_quality.complete_contacts as {{ credit_indicator_type() }}) / contact_quality.contacts
        end as {{ credit_indicator_type() }}) as ind_contact_completeness,
        cast(coalesce(contact_quality.roles_covered, 0) as {{ credit_indicator_type() }}) as ind_key_role_coverage,

        -- credit fulfilment (payment record)
        cast(case
            when payment.window_invoiced_amount > 0
                then cast(payment.window_paid_on_time_amount as {{ credit_indicator_type() }}) / payment.window_invoiced_amount
        end as {{ credit_indicator_type() }}) as ind_on_time_payment_rate,
        cast(case when payment.window_invoices > 0 then payment.avg_days_past_due end as {{ credit_indicator_type() }})
            as ind_avg_days_past_due,
        cast(case when payment.window_invoices > 0 then payment.max_days_overdue end as {{ credit_indicator_type() }})
            as ind_max_days_overdue,
        cast(case when payment.window_invoices > 0 then payment.overdue_count end as {{ credit_indicator_type() }})
            as ind_overdue_count,
        cast(payment.written_off_amount as {{ credit_indicator_type() }}) as ind_written_off_amount,

        -- solvency
        cast(case
            when statements.total_assets > 0 then cast(statements.total_liabilities as {{ credit_indicator_type() }}) / statements.total_assets
        end as {{ credit_indicator_type() }}) as ind_debt_ratio,
        cast(case
            when statements.current_liabilities > 0 then cast(statements.current_assets as {{ credit_indicator_type() }}) / statements.current_liabilities
        end as {{ credit_indicator_type() }}) as ind_current_ratio,
        cast(case
            when customers.credit_limit > 0 then cast(coalesce(receivables.open_receivables, 0) as {{ credit_indicator_type() }}) / customers.credit_limit
        end as {{ credit_indicator_type() }}) as ind_credit_utilisation,

        -- operating capacity
        cast(coalesce(window_orders.purchase_days, 0) as {{ credit_indicator_type() }}) as ind_order_frequency,
        cast(case
            when quarter_revenue.quarter_before_revenue > 0
                then cast(quarter_revenue.last_quarter_revenue as {{ credit_indicator_type() }}) / quarter_revenue.quarter_before_revenue - 1
        end as {{ credit_indicator_type() }}) as ind_revenue_growth_qoq,
        cast(case
            when regularity.intervals >= 2 and regularity.mean_interval > 0
                then cast(regularity.sd_interval as {{ credit_indicator_type() }}) / regularity.mean_interval
        end as {{ credit_indicator_type() }}) as ind_purchase_regularity,
        cast(coalesce(window_orders.product_categories, 0) as {{ credit_indicator_type() }}) as ind_product_breadth,

        -- profitability
        cast(case
            when statements.revenue > 0 then cast(statements.net_profit as {{ credit_indicator_type() }}) / statements.revenue
        end as {{ credit_indicator_type() }}) as ind_net_margin,
        cast(case
            when statements.total_assets > 0 then cast(statements.net_profit as {{ credit_indicator_type() }}) / statements.total_assets
        end as {{ credit_indicator_type() }}) as ind_return_on_assets,
        cast(coalesce(window_orders.gross_margin, 0) as {{ credit_indicator_type() }}) as ind_gross_margin_brought,

        -- which inputs were read from a reconstructed version
        {%- for input in credit_input_names() %}
        coalesce(reconstructed.reconstructed_{{ input }}, false) as reconstructed_{{ input }}{{ ',' if not loop.last }}
        {%- endfor %}
    from customers
    left join payment on customers.customer_id = payment.customer_id
    left join receivables on customers.customer_id = receivables.customer_id
    left join window_orders on customers.customer_id = window_orders.customer_id
    left join quarter_revenue on customers.customer_id = quarter_revenue.customer_id
    left join regularity on customers.customer_id = regularity.customer_id
    left join complaint_counts on customers.customer_id = complaint_counts.customer_id
    left join contact_quality on customers.customer_id = contact_quality.customer_id
    left join statements on customers.customer_id = statements.customer_id
    left join reconstructed on customers.customer_id = reconstructed.customer_id
)

{{ credit_snapshot_rows('final') }}
