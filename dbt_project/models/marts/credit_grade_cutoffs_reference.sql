-- The grade cut-offs a total score is read against, published as credit_grade_cutoffs:
-- each grade with the lowest score that earns it and the score from which the next
-- better grade starts (null for the best grade).
{{ config(alias='credit_grade_cutoffs') }}

with cutoffs as (
    select * from {{ ref('credit_grade_cutoffs') }}
),

final as (
    select
        cast(credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(grade_order as integer) as grade_order,
        cast(min_score as decimal(6, 2)) as min_score,
        cast(lead(min_score) over (order by min_score) as decimal(6, 2)) as next_grade_min_score
    from cutoffs
)

select * from final
