-- Owns the profit and loss of every segment, and of every account manager within it, as
-- of the run date (docs/rules.md "Segment P&L"): each segment has an owner responsible for
-- its break-even. Rows at level 'segment' (account_manager '(all)') and at level
-- 'account_manager' (one per manager holding customers of the segment; '(unassigned)'
-- for customers without one). Amounts are those of customer_value_tiers over the pyramid
-- window: revenue, gross margin, cost to serve and profit = margin - cost to serve. A row
-- breaks even when its profit is zero or more.
with segments as (
    select * from {{ ref('customer_segments') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

customers as (
    select
        segments.segment,
        {{ crm_account_manager('segments.account_manager') }} as account_manager,
        tiers.trailing_12m_revenue,
        tiers.trailing_12m_margin,
        tiers.cost_to_serve,
        tiers.profit
    from segments
    inner join tiers on segments.customer_id = tiers.customer_id
),

grouped as (
    select
        'segment' as level,
        segment,
        '(all)' as account_manager,
        count(*) as customers,
        sum(trailing_12m_revenue) as revenue,
        sum(trailing_12m_margin) as gross_margin,
        sum(cost_to_serve) as cost_to_serve,
        sum(profit) as profit
    from customers
    group by segment
    union all
    select
        'account_manager' as level,
        segment,
        account_manager,
        count(*) as customers,
        sum(trailing_12m_revenue) as revenue,
        sum(trailing_12m_margin) as gross_margin,
        sum(cost_to_serve) as cost_to_serve,
        sum(profit) as profit
    from customers
    group by segment, account_manager
),

final as (
    select
        {{ as_of_date() }} as as_of,
        cast(level as {{ crm_type_string() }}) as level,
        cast(segment as {{ crm_type_string() }}) as segment,
        cast(account_manager as {{ crm_type_string() }}) as account_manager,
        cast(customers as integer) as customers,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(gross_margin as numeric(18, 2)) as gross_margin,
        cast(cost_to_serve as numeric(18, 2)) as cost_to_serve,
        cast(profit as numeric(18, 2)) as profit,
        {{ value_money_ratio('profit', 'customers') }} as profit_per_customer,
        cast(profit >= 0 as boolean) as is_break_even
    from grouped
)

select * from final
