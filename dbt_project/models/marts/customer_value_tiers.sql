-- Owns the value view of every customer as of the run date over the pyramid window
-- (var pyramid_basis_days): pyramid tier (from int_value_pyramid), ABC class, cost to
-- serve and profit. One row per customer in stg_crm__customers.
--
-- ABC: buyers in pyramid rank order; a buyer belongs to the first class (seed
-- abc_classes) whose cumulative share c satisfies revenue_before < c * total revenue,
-- where revenue_before is the revenue of all higher-ranked buyers: the buyers that make
-- up the first 80% of revenue are A, including the one that reaches or crosses 80%.
-- Exact decimal comparison. Non-buyers have no ABC class.
with window_totals as (
    select * from {{ ref('int_value_customer_window') }}
),

pyramid as (
    select * from {{ ref('int_value_pyramid') }}
),

abc_classes as (
    select * from {{ ref('abc_classes') }}
),

unit_costs as (
    select * from {{ ref('cost_to_serve') }}
),

buyers as (
    select
        pyramid.customer_id,
        window_totals.window_net_revenue,
        sum(window_totals.window_net_revenue) over () as total_revenue,
        coalesce(sum(window_totals.window_net_revenue) over (
            order by pyramid.revenue_rank rows between unbounded preceding and 1 preceding
        ), 0) as revenue_before
    from pyramid
    inner join window_totals on pyramid.customer_id = window_totals.customer_id
    where pyramid.revenue_rank is not null
),

buyer_classes as (
    select
        buyers.customer_id,
        min(abc_classes.class_order) as class_order
    from buyers
    inner join abc_classes
        on buyers.revenue_before < abc_classes.cumulative_share * buyers.total_revenue
    group by buyers.customer_id
),

costed as (
    select
        window_totals.*,
        window_totals.window_orders * unit_costs.order_handling_cost
            + window_totals.window_complaints * unit_costs.complaint_handling_cost
            + window_totals.window_compensation as cost_to_serve
    from window_totals
    cross join unit_costs
),

final as (
    select
        costed.customer_id,
        {{ as_of_date() }} as as_of,
        cast(pyramid.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(pyramid.revenue_rank as integer) as revenue_rank,
        cast(abc_classes.abc_class as {{ crm_type_string() }}) as abc_class,
        cast(
            (buyers.revenue_before + buyers.window_net_revenue) / buyers.total_revenue
            as numeric(18, 6)
        ) as cumulative_revenue_share,
        cast(costed.window_net_revenue as numeric(18, 2)) as trailing_12m_revenue,
        cast(costed.window_gross_margin as numeric(18, 2)) as trailing_12m_margin,
        cast(costed.window_orders as integer) as orders_12m,
        cast(costed.window_complaints as integer) as complaints_12m,
        cast(costed.window_compensation as numeric(18, 2)) as compensation_12m,
        cast(costed.cost_to_serve as numeric(18, 2)) as cost_to_serve,
        cast(costed.window_gross_margin - costed.cost_to_serve as numeric(18, 2)) as profit,
        cast(costed.window_gross_margin - costed.cost_to_serve < 0 as boolean) as is_negative_profit,
        cast(costed.tenure_days as integer) as tenure_days
    from costed
    inner join pyramid on costed.customer_id = pyramid.customer_id
    left join buyers on costed.customer_id = buyers.customer_id
    left join buyer_classes on costed.customer_id = buyer_classes.customer_id
    left join abc_classes on buyer_classes.class_order = abc_classes.class_order
)

select * from final
