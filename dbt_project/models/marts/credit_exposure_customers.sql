-- Owns the credit exposure of every customer as of the run date, under its grade for this
-- run's grade quarter: the credit limit on file, the open receivables (invoiced amounts not
-- paid or written off) and the part of them past the invoice's due date, and utilisation
-- (open receivables / credit limit; null without a limit). A customer created after the
-- grade's data_through has no grade yet: '(not graded)'. Published as a current table;
-- the per-grade sums (credit_exposure_by_grade) keep one slice per night.
-- credit_exposure_by_grade sums these rows per grade.
{%- set ungraded = "(not graded)" %}

with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

grades as (
    select * from {{ ref('customer_credit_grades') }}
),

orders as (
    select * from {{ ref('int_orders') }}
),

receivables as (
    select
        customer_id,
        sum(greatest(net_revenue - paid_amount - written_off_amount, 0)) as open_receivables,
        sum(case
            when invoice_due_date < {{ as_of_date() }}
                then greatest(net_revenue - paid_amount - written_off_amount, 0)
            else 0
        end) as overdue_receivables
    from orders
    where {{ is_invoiced('status') }}
    group by customer_id
),

final as (
    select
        {{ credit_grade_quarter() }} as grade_quarter,
        {{ as_of_date() }} as as_of,
        cast(customers.customer_id as bigint) as customer_id,
        cast(coalesce(grades.credit_grade, '{{ ungraded }}') as {{ crm_type_string() }}) as credit_grade,
        cast(customers.credit_limit as numeric(18, 2)) as credit_limit,
        cast(coalesce(receivables.open_receivables, 0) as numeric(18, 2)) as open_receivables,
        cast(coalesce(receivables.overdue_receivables, 0) as numeric(18, 2)) as overdue_receivables,
        cast(case
            when customers.credit_limit > 0
                then {{ value_money_share('coalesce(receivables.open_receivables, 0)', 'customers.credit_limit') }}
        end as numeric(18, 6)) as utilisation
    from customers
    left join grades on customers.customer_id = grades.customer_id
    left join receivables on customers.customer_id = receivables.customer_id
)

select * from final
