with latest as (
    {{ latest_as_of(source('raw', 'financial_statements'), 'statement_id') }}
),

final as (
    select
        statement_id,
        customer_id,
        period_end,
        cast(revenue as decimal(18, 2)) as revenue,
        cast(net_profit as decimal(18, 2)) as net_profit,
        cast(total_assets as decimal(18, 2)) as total_assets,
        cast(total_liabilities as decimal(18, 2)) as total_liabilities,
        cast(current_assets as decimal(18, 2)) as current_assets,
        cast(current_liabilities as decimal(18, 2)) as current_liabilities,
        updated_at
    from latest
)

select * from final
