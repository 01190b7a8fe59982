-- Credit-grade input: the latest financial statement per customer with period_end on or
-- before data_through that had been filed (reached the warehouse) by then; a revision
-- filed later is not seen (see int_credit_customers_at_cutoff for why the history is
-- read here).
{{ config(materialized='view') }}

with latest as (
    {{ credit_versions_at_cutoff(ref('stg_crm__financial_statement_versions'), 'statement_id') }}
),

renamed as (
    select
        {{ crm_financial_statement_columns() }},
        _reconstructed
    from latest
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id order by period_end desc, updated_at desc, statement_id desc
        ) as statement_rank
    from renamed
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
        current_liabilities,
        -- no version known at the cut-off: the earliest held (macros/credit_versions_at_cutoff.sql)
        _reconstructed as is_reconstructed
    from ranked
    where statement_rank = 1
)

select * from final
