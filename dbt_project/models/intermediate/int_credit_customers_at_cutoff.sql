-- Credit-grade input: the customer master as the warehouse knew it at the end of
-- data_through (the last day of the quarter before the graded one). Reads raw history
-- directly with an earlier cut-off than staging, because a grade must not change when a
-- credit limit or an order is changed later in the graded quarter; columns and filters
-- mirror stg_crm__customers.
{{ config(materialized='view') }}

with latest as (
    {{ latest_as_of(source('raw', 'customers'), 'customer_id', credit_data_through(), credit_data_end()) }}
),

final as (
    select
        customer_id,
        customer_type,
        cast(credit_limit as decimal(18, 2)) as credit_limit,
        created_at,
        cast(created_at as date) as created_date
    from latest
    where cast(created_at as date) <= {{ credit_data_through() }}
)

select * from final
