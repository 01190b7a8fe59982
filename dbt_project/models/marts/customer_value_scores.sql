-- Owns the combined value score and its ABC class of every buyer of the pyramid window
-- (docs/rules.md "ABC on combined value"), next to the revenue ABC of
-- customer_value_tiers: one row per customer of customer_value_tiers (non-buyers have
-- no score and no class). Each factor of the seed value_score_factors is measured
-- against the average buyer, index = value / mean over the buyers (1 = average); the
-- score is the weighted mean of the indices, a factor with higher_is_better false (cost
-- to serve) counting against the customer: score = sum(+-weight x index) / sum(weight).
-- With the default weights the average buyer scores 0.70. ABC by cumulative score:
-- buyers in score order (highest first, then customer_id) belong to the first class of the
-- seed abc_classes whose cumulative share c satisfies score_before < c x total score,
-- the last class when none does (buyers past the peak of the cumulative score).
with tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

factors as (
    select * from {{ ref('value_score_factors') }}
),

abc_classes as (
    select * from {{ ref('abc_classes') }}
),

buyers as (
    select * from tiers
    where revenue_rank is not null
),

factor_values as (
    select customer_id, 'revenue' as factor, cast(trailing_12m_revenue as {{ crm_type_double() }}) as factor_value from buyers
    union all
    select customer_id, 'profit' as factor, cast(profit as {{ crm_type_double() }}) as factor_value from buyers
    union all
    select customer_id, 'tenure' as factor, cast(tenure_days as {{ crm_type_double() }}) as factor_value from buyers
    union all
    select customer_id, 'cost_to_serve' as factor, cast(cost_to_serve as {{ crm_type_double() }}) as factor_value from buyers
),

factor_scores as (
    select
        factor_values.customer_id,
        factor_values.factor,
        factors.weight,
        -- the factor against the average buyer (1 = average; 0 when the average is 0)
        coalesce(factor_values.factor_value / nullif(avg(factor_values.factor_value) over (
            partition by factor_values.factor
        ), 0), 0) as factor_index,
        case when factors.higher_is_better then 1 else -1 end as direction
    from factor_values
    inner join factors on factor_values.factor = factors.factor
),

scores as (
    select
        customer_id,
        max(case when factor = 'revenue' then factor_index end) as revenue_index,
        max(case when factor = 'profit' then factor_index end) as profit_index,
        max(case when factor = 'tenure' then factor_index end) as tenure_index,
        max(case when factor = 'cost_to_serve' then factor_index end) as cost_to_serve_index,
        sum(direction * weight * factor_index) / nullif(sum(weight), 0) as value_score
    from factor_scores
    group by customer_id
),

ranked as (
    select
        customer_id,
        value_score,
        row_number() over (order by value_score desc, customer_id) as value_score_rank,
        sum(value_score) over () as total_score,
        coalesce(sum(value_score) over (
            order by value_score desc, customer_id rows between unbounded preceding and 1 preceding
        ), 0) as score_before
    from scores
),

-- a buyer after the peak of the cumulative score (negative scores) falls in the last class
score_classes as (
    select
        ranked.customer_id,
        coalesce(
            min(case when ranked.score_before < abc_classes.cumulative_share * ranked.total_score
                then abc_classes.class_order end),
            max(abc_classes.class_order)
        ) as class_order
    from ranked
    cross join abc_classes
    group by ranked.customer_id
),

final as (
    select
        tiers.customer_id,
        tiers.as_of,
        cast(tiers.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(tiers.abc_class as {{ crm_type_string() }}) as revenue_abc_class,
        cast(scores.revenue_index as numeric(18, 6)) as revenue_index,
        cast(scores.profit_index as numeric(18, 6)) as profit_index,
        cast(scores.tenure_index as numeric(18, 6)) as tenure_index,
        cast(scores.cost_to_serve_index as numeric(18, 6)) as cost_to_serve_index,
        cast(scores.value_score as numeric(18, 6)) as value_score,
        cast(ranked.value_score_rank as integer) as value_score_rank,
        cast(abc_classes.abc_class as {{ crm_type_string() }}) as value_abc_class
    from tiers
    left join scores on tiers.customer_id = scores.customer_id
    left join ranked on tiers.customer_id = ranked.customer_id
    left join score_classes on tiers.customer_id = score_classes.customer_id
    left join abc_classes on score_classes.class_order = abc_classes.class_order
)

select * from final
