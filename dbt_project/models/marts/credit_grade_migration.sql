-- Owns the credit-grade migration matrix: this run's grade quarter against the latest
-- graded quarter before it (int_credit_grade_history), one row per (from_grade, to_grade)
-- pair that has customers. A customer graded now but not then comes from '(new)'; one
-- graded then but not now goes to '(no longer graded)'. Movement compares the grades'
-- order in seed credit_grade_cutoffs (up = a better grade). The shares moved up and down
-- count the customers graded in both quarters. No rows before a second quarter is graded.
-- Drill-down: the customers of a pair are the customer_ids of customer_credit_grades in
-- the two quarters with those grades.
{%- set new_label = "(new)" %}
{%- set gone_label = "(no longer graded)" %}

with history as (
    select * from {{ ref('int_credit_grade_history') }}
),

cutoffs as (
    select * from {{ ref('credit_grade_cutoffs') }}
),

previous_quarter as (
    select max(grade_quarter) as previous_grade_quarter
    from history
    where grade_quarter < {{ credit_grade_quarter() }}
),

current_grades as (
    select customer_id, credit_grade
    from history
    where grade_quarter = {{ credit_grade_quarter() }}
),

previous_grades as (
    select history.customer_id, history.credit_grade
    from history
    inner join previous_quarter on history.grade_quarter = previous_quarter.previous_grade_quarter
),

pairs as (
    select
        coalesce(previous_grades.credit_grade, '{{ new_label }}') as from_grade,
        coalesce(current_grades.credit_grade, '{{ gone_label }}') as to_grade,
        from_order.grade_order as from_grade_order,
        to_order.grade_order as to_grade_order
    from current_grades
    full outer join previous_grades on current_grades.customer_id = previous_grades.customer_id
    left join cutoffs as from_order on previous_grades.credit_grade = from_order.credit_grade
    left join cutoffs as to_order on current_grades.credit_grade = to_order.credit_grade
),

matrix as (
    select
        from_grade,
        to_grade,
        from_grade_order,
        to_grade_order,
        case
            when from_grade_order is null then 'new'
            when to_grade_order is null then 'no longer graded'
            when to_grade_order < from_grade_order then 'up'
            when to_grade_order > from_grade_order then 'down'
            else 'unchanged'
        end as movement,
        count(*) as customers
    from pairs
    group by from_grade, to_grade, from_grade_order, to_grade_order
),

from_totals as (
    select from_grade, sum(customers) as from_customers
    from matrix
    group by from_grade
),

overall as (
    select
        sum(case when movement in ('up', 'down', 'unchanged') then customers else 0 end) as both_quarters,
        sum(case when movement = 'up' then customers else 0 end) as moved_up,
        sum(case when movement = 'down' then customers else 0 end) as moved_down
    from matrix
),

final as (
    select
        {{ credit_grade_quarter() }} as grade_quarter,
        cast(previous_quarter.previous_grade_quarter as date) as previous_grade_quarter,
        cast(matrix.from_grade as {{ crm_type_string() }}) as from_grade,
        cast(matrix.to_grade as {{ crm_type_string() }}) as to_grade,
        cast(matrix.from_grade_order as integer) as from_grade_order,
        cast(matrix.to_grade_order as integer) as to_grade_order,
        cast(matrix.movement as {{ crm_type_string() }}) as movement,
        cast(matrix.customers as integer) as customers,
        cast(
            case when matrix.from_grade_order is not null
                then cast(matrix.customers as numeric(18, 6)) / from_totals.from_customers
            end as numeric(18, 6)
        ) as share_of_from_grade,
        cast(
            case when overall.both_quarters > 0
                then cast(overall.moved_up as numeric(18, 6)) / overall.both_quarters
            end as numeric(18, 6)
        ) as quarter_moved_up_share,
        cast(
            case when overall.both_quarters > 0
                then cast(overall.moved_down as numeric(18, 6)) / overall.both_quarters
            end as numeric(18, 6)
        ) as quarter_moved_down_share
    from matrix
    inner join from_totals on matrix.from_grade = from_totals.from_grade
    cross join overall
    cross join previous_quarter
    where previous_quarter.previous_grade_quarter is not null
)

select * from final
