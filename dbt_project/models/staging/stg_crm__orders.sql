-- Every version of every order in raw.orders: one row per extracted version, in the
-- order currency, with its bookkeeping columns. The models that need one version per
-- order pick it: int_orders_latest the run date's (kept between runs),
-- int_credit_orders_at_cutoff the one known at the end of the previous quarter;
-- int_orders_changes finds the orders a nightly run recomputes.
{#- One SELECT without a WITH clause: PostgreSQL flattens such a view into the query that
    reads it, so its readers' filters (a changed order id, a visibility date, the newest
    load time) are applied while raw.orders is read, through the indexes the pre-hook
    creates (order_id; _loaded_at). A view with a WITH clause is planned on its own: every
    version is read before the filter. -#}
{{ config(pre_hook="{{ crm_indexes(crm_source_relation('raw', 'orders'), [['order_id'], ['_loaded_at']]) }}") }}

select * from {{ source('raw', 'orders') }}
