-- Owns the bad payers of every graded quarter that is over (its last day is on or before
-- the run date): one row per customer graded in the quarter (int_credit_grade_history)
-- that was a bad payer during it, with the grade it had. A customer is a bad payer in a
-- quarter when an invoice of theirs passed var credit_bad_days_past_due days past its due
-- date unpaid during the quarter (the day after the mark falls in it, and the invoice was
-- not paid in full by the mark), or when one of their orders was written off during it
-- (the first version in raw with a write-off is dated by its change time). Orders are
-- read as known on the run date. The grade is the one published for the quarter, never
-- recomputed. credit_grade_outcomes counts these rows per grade.
{%- set days = var('credit_bad_days_past_due') | int %}

with history as (
    select * from {{ ref('int_credit_grade_history') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

order_versions as (
    select * from {{ ref('stg_crm__orders') }}
),

quarters_over as (
    select distinct
        grade_quarter,
        {{ crm_add_months('grade_quarter', 3) }} as next_quarter_start
    from history
    where {{ crm_add_months('grade_quarter', 3) }} <= {{ crm_add_days(as_of_date(), 1) }}
),

late_invoices as (
    select
        customer_id,
        order_id,
        -- the first day the invoice is more than the limit past due
        {{ crm_add_days('invoice_due_date', days + 1) }} as event_date
    from orders
    where {{ is_invoiced('status') }}
      and not (
          paid_at is not null
          and paid_amount >= gross_amount
          and cast(paid_at as date) <= {{ crm_add_days('invoice_due_date', days) }}
      )
),

write_offs as (
    select
        customer_id,
        order_id,
        cast(min(updated_at) as date) as event_date
    from order_versions
    where written_off_amount > 0
      and _visible_from <= {{ as_of_date() }}
      and updated_at < {{ as_of_end() }}
    group by customer_id, order_id
),

events as (
    select customer_id, order_id, event_date, 'late' as kind from late_invoices
    union all
    select customer_id, order_id, event_date, 'write_off' as kind from write_offs
),

quarter_events as (
    select
        quarters_over.grade_quarter,
        events.customer_id,
        sum(case when events.kind = 'late' then 1 else 0 end) as late_invoices,
        sum(case when events.kind = 'write_off' then 1 else 0 end) as written_off_orders,
        min(events.event_date) as first_event_date
    from events
    inner join quarters_over
        on events.event_date >= quarters_over.grade_quarter
        and events.event_date < quarters_over.next_quarter_start
    group by quarters_over.grade_quarter, events.customer_id
),

final as (
    select
        history.grade_quarter,
        cast(history.customer_id as bigint) as customer_id,
        cast(history.credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(quarter_events.late_invoices as integer) as late_invoices,
        cast(quarter_events.written_off_orders as integer) as written_off_orders,
        cast(quarter_events.first_event_date as date) as first_bad_event_date
    from history
    inner join quarter_events
        on history.grade_quarter = quarter_events.grade_quarter
        and history.customer_id = quarter_events.customer_id
)

select * from final
