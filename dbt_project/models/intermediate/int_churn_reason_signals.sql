-- Owns what preceded each customer's churn (docs/rules.md "Why customers leave"): one row
-- per customer of customer_churn who is dormant or lost on the run date, with the day
-- they churned (the earliest of: last purchase + dormancy threshold, rounded up; last
-- purchase + var churn_lost_days; the run date, for a customer lost only by probability
-- alive) and the signals of the look-back window: the var churn_reason_lookback_days days
-- up to the last purchase day plus the quiet days after it up to the churn day. Signals:
-- complaints by category, complaints unresolved on the churn day, compensation, invoices
-- paid late or unpaid past due by the churn day, gross-margin share of the invoiced orders
-- (a price change shows as a margin change), product categories bought; the last two also
-- for the window of the same length before (the comparison base). revenue_lost is the
-- customer's net revenue in the var churn_year_days days up to the last purchase.
{%- set lookback = var('churn_reason_lookback_days') | int %}
{%- set year_days = var('churn_year_days') | int %}
{%- set categories = complaint_category_names() %}

with churn as (
    select * from {{ ref('customer_churn') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

complaints as (
    select * from {{ ref('stg_crm__complaints') }}
),

churned as (
    select
        customer_id,
        last_order_date,
        case when is_dormant then 'dormant' else 'lost' end as churn_status,
        least(
            case when is_dormant
                then {{ crm_add_days('last_order_date', 'ceil(dormancy_threshold_days)') }} end,
            case when days_since_last_order >= {{ var('churn_lost_days') }}
                then {{ crm_add_days('last_order_date', var('churn_lost_days')) }} end,
            {{ as_of_date() }}
        ) as churned_on,
        {{ crm_add_days('last_order_date', 1 - lookback) }} as window_start,
        {{ crm_add_days('last_order_date', 1 - 2 * lookback) }} as base_start
    from churn
    where (is_dormant or coalesce(is_lost, false))
      and last_order_date is not null
),

order_signals as (
    select
        churned.customer_id,
        sum(case when orders.order_date >= churned.window_start and {{ is_invoiced('orders.status') }}
            then orders.net_revenue else 0 end) as window_revenue,
        sum(case when orders.order_date >= churned.window_start and {{ is_invoiced('orders.status') }}
            then orders.gross_margin else 0 end) as window_margin,
        sum(case when orders.order_date < churned.window_start and {{ is_invoiced('orders.status') }}
            then orders.net_revenue else 0 end) as base_revenue,
        sum(case when orders.order_date < churned.window_start and {{ is_invoiced('orders.status') }}
            then orders.gross_margin else 0 end) as base_margin,
        count(distinct case when orders.order_date >= churned.window_start and orders.is_purchase
            then orders.product_category end) as window_categories,
        count(distinct case when orders.order_date < churned.window_start and orders.is_purchase
            then orders.product_category end) as base_categories,
        sum(case
            when orders.order_date >= churned.window_start
             and {{ is_invoiced('orders.status') }}
             and orders.invoice_due_date < churned.churned_on
             and (orders.paid_at is null or cast(orders.paid_at as date) > orders.invoice_due_date)
                then 1 else 0
        end) as late_payments
    from churned
    inner join orders
        on orders.customer_id = churned.customer_id
        and orders.order_date >= churned.base_start
        and orders.order_date <= churned.last_order_date
    group by churned.customer_id
),

revenue_lost as (
    select
        churned.customer_id,
        sum(orders.net_revenue) as revenue_lost
    from churned
    inner join orders
        on orders.customer_id = churned.customer_id
        and orders.order_date > {{ crm_add_days('churned.last_order_date', -year_days) }}
        and orders.order_date <= churned.last_order_date
    group by churned.customer_id
),

complaint_signals as (
    select
        churned.customer_id,
        count(*) as complaints,
        {%- for category in categories %}
        {%- if category == 'other' %}
        sum(case when complaints.category is null
                   or complaints.category not in {{ crm_in_list(categories | reject('equalto', 'other') | list) }}
            then 1 else 0 end) as complaints_other,
        {%- else %}
        sum(case when complaints.category = '{{ category }}' then 1 else 0 end) as complaints_{{ category }},
        {%- endif %}
        {%- endfor %}
        sum(case when complaints.resolved_at is null
                   or complaints.resolved_at >= {{ crm_add_days('churned.churned_on', 1) }}
            then 1 else 0 end) as unresolved_complaints,
        sum(complaints.compensation_amount) as compensation
    from churned
    inner join complaints
        on complaints.customer_id = churned.customer_id
        and complaints.opened_at >= churned.window_start
        and complaints.opened_at < {{ crm_add_days('churned.churned_on', 1) }}
    group by churned.customer_id
),

final as (
    select
        churned.customer_id,
        churned.churn_status,
        churned.last_order_date,
        cast(churned.churned_on as date) as churned_on,
        cast(churned.window_start as date) as window_start,
        cast(coalesce(complaint_signals.complaints, 0) as integer) as complaints,
        {%- for category in categories %}
        cast(coalesce(complaint_signals.complaints_{{ category }}, 0) as integer) as complaints_{{ category }},
        {%- endfor %}
        cast(coalesce(complaint_signals.unresolved_complaints, 0) as integer) as unresolved_complaints,
        cast(coalesce(complaint_signals.compensation, 0) as numeric(18, 2)) as compensation,
        cast(coalesce(order_signals.late_payments, 0) as integer) as late_payments,
        cast(case when order_signals.base_revenue > 0 then order_signals.base_margin / order_signals.base_revenue end
            as {{ crm_type_double() }}) as base_margin_share,
        cast(case when order_signals.window_revenue > 0 then order_signals.window_margin / order_signals.window_revenue end
            as {{ crm_type_double() }}) as window_margin_share,
        cast(coalesce(order_signals.base_categories, 0) as integer) as base_product_categories,
        cast(coalesce(order_signals.window_categories, 0) as integer) as window_product_categories,
        cast(coalesce(revenue_lost.revenue_lost, 0) as numeric(18, 2)) as revenue_lost
    from churned
    left join order_signals on churned.customer_id = order_signals.customer_id
    left join complaint_signals on churned.customer_id = complaint_signals.customer_id
    left join revenue_lost on churned.customer_id = revenue_lost.customer_id
)

select * from final
