-- Owns the scoring of the credit scorecard: one row per customer per indicator (20 per
-- customer), the indicator's value, the bin it falls in (seed credit_scorecard_bins:
-- lower bound inclusive, upper bound exclusive) and its points. A
-- missing value scores the indicator's fallback_points from seed credit_scorecard and is
-- flagged is_fallback.
{#- Incremental per quarter: reused while its inputs are unchanged (macros/credit_snapshot.sql). -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='sync_all_columns',
          pre_hook="{{ credit_snapshot_reset(ref('int_credit_indicators')) }}",
          post_hook="{{ crm_unique_index(this, ['customer_id', 'indicator']) }}") }}
{%- set indicators = credit_indicator_names() %}

with indicators as (
    select * from {{ ref('int_credit_indicators') }}
),

scorecard as (
    select * from {{ ref('credit_scorecard') }}
),

bins as (
    select * from {{ ref('credit_scorecard_bins') }}
),

long_values as (
    {%- for name in indicators %}
    select
        customer_id,
        cast('{{ name }}' as varchar(64)) as indicator,
        ind_{{ name }} as indicator_value
    from indicators
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        long_values.customer_id,
        long_values.indicator,
        scorecard.indicator_order,
        scorecard.category,
        scorecard.is_financial,
        long_values.indicator_value,
        bins.bin_order,
        long_values.indicator_value is null as is_fallback,
        cast(case
            when long_values.indicator_value is null then scorecard.fallback_points
            else bins.points
        end as decimal(6, 2)) as points,
        cast(scorecard.max_points as decimal(6, 2)) as max_points
    from long_values
    inner join scorecard
        on long_values.indicator = scorecard.indicator
    left join bins
        on long_values.indicator = bins.indicator
        and long_values.indicator_value >= bins.lower_bound
        and long_values.indicator_value < bins.upper_bound
)

{{ credit_snapshot_rows('final', ref('int_credit_indicators')) }}
