{#- Written as one SELECT, not as CTEs: PostgreSQL never flattens a view that has a WITH
    clause into the query that reads it, so a filter holding a subquery (int_orders'
    "changed orders" on a nightly run) was applied only after all 20M orders had been
    joined with the exchange rates (26 s at scale L). Flattened, the filter is applied
    while the orders are read. (A subquery in FROM without a WITH clause is flattened; the
    refs sit in subqueries so that `dbt build --empty` can wrap them.) -#}
-- The latest version of each order known on the run date, amounts in the reporting
-- currency.
select
    latest.order_id,
    latest.customer_id,
    latest.order_date,
    latest.status,
    latest.currency,
    {{ order_amounts_in_reporting_currency('latest', 'fx') }},
    latest.product_category,
    latest.invoice_due_date,
    latest.paid_at,
    latest.updated_at,
    latest._built_as_of
from (select * from {{ ref('stg_crm__orders_latest') }}) as latest
inner join (select * from {{ ref('fx_rates') }}) as fx
    on latest.currency = fx.currency
where latest.order_date <= {{ as_of_date() }}
