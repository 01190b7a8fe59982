-- Owns the credit exposure per grade as of the run date (this run's grade quarter): the
-- customers, their credit limits, open and overdue receivables, and utilisation (open
-- receivables / credit limits of the customers that have one). One row per grade of seed
-- credit_grade_cutoffs, empty grades included, and one for '(not graded)' when there are
-- such customers. Drill-down: credit_exposure_customers, same grade_quarter and grade.

with customers as (
    select * from {{ ref('credit_exposure_customers') }}
),

cutoffs as (
    select * from {{ ref('credit_grade_cutoffs') }}
),

grades as (
    select credit_grade, grade_order from cutoffs
    union all
    select distinct customers.credit_grade, cast(null as integer) as grade_order
    from customers
    left join cutoffs on customers.credit_grade = cutoffs.credit_grade
    where cutoffs.credit_grade is null
),

per_grade as (
    select
        credit_grade,
        count(*) as customers,
        sum(credit_limit) as credit_limit,
        sum(open_receivables) as open_receivables,
        sum(overdue_receivables) as overdue_receivables,
        sum(case when credit_limit > 0 then open_receivables else 0 end) as limited_receivables,
        sum(case when credit_limit > 0 then credit_limit else 0 end) as positive_limit
    from customers
    group by credit_grade
),

final as (
    select
        {{ credit_grade_quarter() }} as grade_quarter,
        {{ as_of_date() }} as as_of,
        cast(grades.credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(grades.grade_order as integer) as grade_order,
        cast(coalesce(per_grade.customers, 0) as integer) as customers,
        cast(coalesce(per_grade.credit_limit, 0) as numeric(18, 2)) as credit_limit,
        cast(coalesce(per_grade.open_receivables, 0) as numeric(18, 2)) as open_receivables,
        cast(coalesce(per_grade.overdue_receivables, 0) as numeric(18, 2)) as overdue_receivables,
        cast(case
            when per_grade.positive_limit > 0 then per_grade.limited_receivables / per_grade.positive_limit
        end as numeric(18, 6)) as utilisation
    from grades
    left join per_grade on grades.credit_grade = per_grade.credit_grade
)

select * from final
