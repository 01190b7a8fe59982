-- Owns the validation of the scorecard: for every graded quarter that is over, per grade
-- of seed credit_grade_cutoffs, the customers graded, the bad payers among them
-- (credit_outcome_customers) and the bad rate. ranks_in_grade_order is true when, among
-- the quarter's grades that have customers, no grade has a lower bad rate than a better
-- one (AAA lowest). The quarter's grades are those published for it, never changed by
-- later data. Drill-down: credit_outcome_customers, same grade_quarter and grade.

with history as (
    select * from {{ ref('int_credit_grade_history') }}
),

bad_payers as (
    select * from {{ ref('credit_outcome_customers') }}
),

cutoffs as (
    select * from {{ ref('credit_grade_cutoffs') }}
),

quarters_over as (
    select distinct grade_quarter
    from history
    where {{ crm_add_months('grade_quarter', 3) }} <= {{ crm_add_days(as_of_date(), 1) }}
),

graded as (
    select history.grade_quarter, history.credit_grade, count(*) as customers
    from history
    inner join quarters_over on history.grade_quarter = quarters_over.grade_quarter
    group by history.grade_quarter, history.credit_grade
),

bad as (
    select grade_quarter, credit_grade, count(*) as bad_customers
    from bad_payers
    group by grade_quarter, credit_grade
),

rates as (
    select
        quarters_over.grade_quarter,
        cutoffs.credit_grade,
        cutoffs.grade_order,
        coalesce(graded.customers, 0) as customers,
        coalesce(bad.bad_customers, 0) as bad_customers,
        case when graded.customers > 0 then cast(coalesce(bad.bad_customers, 0) as {{ crm_type_double() }}) / graded.customers
        end as bad_rate
    from quarters_over
    cross join cutoffs
    left join graded
        on quarters_over.grade_quarter = graded.grade_quarter and cutoffs.credit_grade = graded.credit_grade
    left join bad
        on quarters_over.grade_quarter = bad.grade_quarter and cutoffs.credit_grade = bad.credit_grade
),

-- the highest bad rate among the better grades (with customers) of the same quarter
ranked as (
    select
        rates.*,
        max(bad_rate) over (
            partition by grade_quarter order by grade_order rows between unbounded preceding and 1 preceding
        ) as worst_better_rate
    from rates
),

quarter_order as (
    select
        grade_quarter,
        min(case when bad_rate is not null and worst_better_rate > bad_rate then 0 else 1 end) = 1
            as ranks_in_grade_order
    from ranked
    group by grade_quarter
),

final as (
    select
        ranked.grade_quarter,
        cast(ranked.credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(ranked.grade_order as integer) as grade_order,
        cast(ranked.customers as integer) as customers,
        cast(ranked.bad_customers as integer) as bad_customers,
        cast(ranked.bad_rate as numeric(18, 6)) as bad_rate,
        cast(quarter_order.ranks_in_grade_order as boolean) as ranks_in_grade_order
    from ranked
    inner join quarter_order on ranked.grade_quarter = quarter_order.grade_quarter
)

select * from final
