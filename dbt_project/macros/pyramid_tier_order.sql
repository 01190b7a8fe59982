{#- The pyramid rule, shared by this year's tiers and last year's: the buyer at revenue
    rank p of n (1 = largest) takes the first tier whose cumulative share c satisfies
    p - 1 < c * n, so the cumulative tier sizes are ceil(c * n): 10/40/150/800 of 1,000.
    `ranked` has customer_id, revenue_rank, buyers; `cutpoints` is the seed
    value_tier_cutpoints (tier_order, value_tier, cumulative_share). -#}
{% macro pyramid_tier_order(ranked, cutpoints) -%}
    select
        {{ ranked }}.customer_id,
        min({{ cutpoints }}.tier_order) as tier_order
    from {{ ranked }}
    inner join {{ cutpoints }}
        on {{ ranked }}.revenue_rank - 1 < {{ cutpoints }}.cumulative_share * {{ ranked }}.buyers
    group by {{ ranked }}.customer_id
{%- endmacro %}
