-- Every customer is in exactly one segment. Returns the customers of
-- stg_crm__customers with zero or several rows (or a null segment) in customer_segments,
-- and rows of customer_segments for unknown customers.
with customers as (
    select customer_id from {{ ref('stg_crm__customers') }}
),

segment_rows as (
    select
        customer_id,
        count(*) as segment_rows,
        sum(case when segment is null then 1 else 0 end) as null_segments
    from {{ ref('customer_segments') }}
    group by customer_id
)

select
    coalesce(customers.customer_id, segment_rows.customer_id) as customer_id,
    coalesce(segment_rows.segment_rows, 0) as segment_rows,
    customers.customer_id is null as is_unknown_customer
from customers
full outer join segment_rows on customers.customer_id = segment_rows.customer_id
where customers.customer_id is null
   or segment_rows.customer_id is null
   or segment_rows.segment_rows <> 1
   or segment_rows.null_segments > 0
