-- Owns the likely causes of every churned customer as of the run date (docs/rules.md "Why
-- customers leave"): one row per customer of customer_churn who is dormant or lost, with
-- the signals of int_churn_reason_signals, one flag per reason of macro churn_reason_rules,
-- the reasons that apply as a list in that order ('none_visible' when none does), the
-- first of them as primary_reason, and the revenue that left with the customer.
{%- set rules = churn_reason_rules() %}

with signals as (
    select * from {{ ref('int_churn_reason_signals') }}
),

customers as (
    select * from {{ ref('stg_crm__customers') }}
),

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

flagged as (
    select
        signals.*,
        {%- for name, condition in rules %}
        coalesce({{ condition }}, false) as reason_{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from signals
),

final as (
    select
        cast(flagged.customer_id as bigint) as customer_id,
        cast({{ as_of_date() }} as date) as as_of,
        cast({{ crm_account_manager('customers.account_manager') }} as {{ crm_type_string() }}) as account_manager,
        cast(tiers.value_tier as {{ crm_type_string() }}) as value_tier,
        cast(flagged.churn_status as {{ crm_type_string() }}) as churn_status,
        cast(flagged.last_order_date as date) as last_order_date,
        cast(flagged.churned_on as date) as churned_on,
        cast({{ crm_month_start('flagged.churned_on') }} as date) as churn_month,
        cast(flagged.window_start as date) as window_start,
        cast(flagged.complaints as integer) as complaints,
        {%- for category in complaint_category_names() %}
        cast(flagged.complaints_{{ category }} as integer) as complaints_{{ category }},
        {%- endfor %}
        cast(flagged.unresolved_complaints as integer) as unresolved_complaints,
        cast(flagged.compensation as numeric(18, 2)) as compensation,
        cast(flagged.late_payments as integer) as late_payments,
        cast(flagged.base_margin_share as numeric(9, 6)) as base_margin_share,
        cast(flagged.window_margin_share as numeric(9, 6)) as window_margin_share,
        cast(flagged.base_product_categories as integer) as base_product_categories,
        cast(flagged.window_product_categories as integer) as window_product_categories,
        {%- for name, condition in rules %}
        cast(flagged.reason_{{ name }} as boolean) as reason_{{ name }},
        {%- endfor %}
        cast(
            {%- for name, condition in rules %}
            case when flagged.reason_{{ name }} then 1 else 0 end{{ ' +' if not loop.last }}
            {%- endfor %}
            as integer
        ) as reason_count,
        cast(coalesce(
            {%- for name, condition in rules %}
            case when flagged.reason_{{ name }} then '{{ name }}' end,
            {%- endfor %}
            'none_visible'
        ) as {{ crm_type_string() }}) as primary_reason,
        cast(coalesce(nullif(concat_ws(', '
            {%- for name, condition in rules %},
            case when flagged.reason_{{ name }} then '{{ name }}' end
            {%- endfor %}
        ), ''), 'none_visible') as {{ crm_type_string() }}) as reasons,
        cast(flagged.revenue_lost as numeric(18, 2)) as revenue_lost
    from flagged
    left join customers on flagged.customer_id = customers.customer_id
    left join tiers on flagged.customer_id = tiers.customer_id
)

select * from final
