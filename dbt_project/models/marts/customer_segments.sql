-- Owns the published segment of every customer as of the run date: exactly one row per
-- customer in stg_crm__customers. The segment comes from the ordered rule list in the
-- seed segment_rules: every customer is matched against every rule (a null condition
-- means "any value"; list conditions are '|'-separated), and the matching rule with the
-- lowest rule_order wins. The seed ends with a catch-all rule, so every customer gets a
-- segment (tests assert_one_segment_per_customer and not_null on segment).
-- CLV conditions (min/max_clv_12m, min/max_prob_alive) compare with the CLV step's
-- outputs of this as_of; a customer without them (prospect, or the fit of this as_of
-- failed) never matches a CLV condition, like a null value never matches a list.
with features as (
    select * from {{ ref('int_segment_customer_features') }}
),

rules as (
    select * from {{ ref('segment_rules') }}
),

matches as (
    select
        features.customer_id,
        rules.rule_order,
        row_number() over (partition by features.customer_id order by rules.rule_order) as match_rank
    from features
    inner join rules
        on (rules.has_purchase is null or rules.has_purchase = features.has_purchase)
       and (rules.value_tiers is null
            or (features.value_tier is not null and {{ value_in_list('rules.value_tiers', 'features.value_tier') }}))
       and (rules.rfm_segments is null
            or (features.rfm_segment is not null and {{ value_in_list('rules.rfm_segments', 'features.rfm_segment') }}))
       and (rules.credit_grades is null
            or (features.credit_grade is not null and {{ value_in_list('rules.credit_grades', 'features.credit_grade') }}))
       and (rules.is_dormant is null or rules.is_dormant = features.is_dormant)
       and (rules.max_product_categories is null or features.product_categories <= rules.max_product_categories)
       and (rules.min_clv_12m is null or features.clv_12m >= rules.min_clv_12m)
       and (rules.max_clv_12m is null or features.clv_12m < rules.max_clv_12m)
       and (rules.min_prob_alive is null or features.prob_alive >= rules.min_prob_alive)
       and (rules.max_prob_alive is null or features.prob_alive < rules.max_prob_alive)
),

first_match as (
    select customer_id, rule_order from matches where match_rank = 1
),

final as (
    select
        features.customer_id,
        features.as_of,
        cast(rules.segment as {{ crm_type_string() }}) as segment,
        cast(rules.rule_order as integer) as rule_order,
        cast(rules.owner_role as {{ crm_type_string() }}) as segment_owner_role,
        cast(features.account_manager as {{ crm_type_string() }}) as account_manager,
        cast(rules.recommended_next_action as {{ crm_type_string() }}) as recommended_next_action,
        cast(features.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(features.abc_class as {{ crm_type_string() }}) as abc_class,
        cast(features.rfm_segment as {{ crm_type_string() }}) as rfm_segment,
        cast(features.credit_grade as {{ crm_type_string() }}) as credit_grade,
        cast(features.is_dormant as boolean) as is_dormant,
        cast(features.purchase_likelihood as numeric(9, 6)) as purchase_likelihood,
        cast(features.purchase_likelihood_method as {{ crm_type_string() }}) as purchase_likelihood_method,
        cast(features.prob_alive as numeric(9, 6)) as prob_alive,
        cast(features.clv_12m as numeric(18, 2)) as clv_12m,
        cast(features.historical_value as numeric(18, 2)) as historical_value,
        cast(features.trailing_12m_revenue as numeric(18, 2)) as trailing_12m_revenue
    from features
    left join first_match on features.customer_id = first_match.customer_id
    left join rules on first_match.rule_order = rules.rule_order
)

select * from final
