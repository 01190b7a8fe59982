-- Credit-grade input: the latest financial statement per customer with period_end on or
-- before data_through that had been filed (reached the warehouse) by then; a revision
-- filed later is not seen (see int_credit_customers_at_cutoff for why raw is read here).
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(source('raw', 'financial_statements'), 'statement_id', credit_data_through(), credit_data_end()) }}
),

ranked as (
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
        row_number() over (
            partition by customer_id order by period_end desc, updated_at desc, statement_id desc
        ) as statement_rank
    from latest
    where period_end <= {{ credit_data_through() }}
),

final as (
    select
        statement_id,
        customer_id,
        period_end,
        revenue,
        net_profit,
        total_assets,
        total_liabilities,
        current_assets,
        current_liabilities
    from ranked
    where statement_rank = 1
)

select * from final
