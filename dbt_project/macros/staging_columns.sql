{#- The renamed and typed columns of each raw entity, as a select list over one version
    per key (the rows of latest_as_of). Each list is shared by the models that pick a
    version of the entity: the staging model (the run date's version), the credit
    snapshot's *_at_cutoff model (the version known at the end of the previous quarter)
    and, for orders, int_orders_latest. -#}

{% macro crm_customer_columns() -%}
        customer_id,
        name as customer_name,
        customer_type,
        industry,
        region,
        acquisition_channel,
        account_manager,
        cast(credit_limit as decimal(18, 2)) as credit_limit,
        status,
        created_at,
        cast(created_at as date) as created_date,
        updated_at
{%- endmacro %}

{% macro crm_contact_columns() -%}
        contact_id,
        customer_id,
        name as contact_name,
        title,
        email,
        phone,
        lower(role) as role,
        last_verified_at,
        updated_at
{%- endmacro %}

{#- In the order currency: int_orders and int_credit_orders_at_cutoff convert the amounts
    (order_amounts_in_reporting_currency). -#}
{% macro crm_order_columns() -%}
        order_id,
        customer_id,
        order_date,
        status,
        currency,
        gross_amount,
        cost_amount,
        paid_amount,
        written_off_amount,
        product_category,
        invoice_due_date,
        paid_at,
        updated_at
{%- endmacro %}

{#- `cutoff_end`: the first instant after the cut-off; a resolution recorded later is not
    known yet. -#}
{% macro crm_complaint_columns(cutoff_end) -%}
        complaint_id,
        customer_id,
        order_id,
        opened_at,
        category,
        severity,
        channel,
        status,
        case when resolved_at < {{ cutoff_end }} then resolved_at end as resolved_at,
        cast(coalesce(compensation_amount, 0) as decimal(18, 2)) as compensation_amount,
        updated_at
{%- endmacro %}

{% macro crm_financial_statement_columns() -%}
        statement_id,
        customer_id,
        period_end,
        cast(revenue as decimal(18, 2)) as revenue,
        cast(net_profit as decimal(18, 2)) as net_profit,
        cast(total_assets as decimal(18, 2)) as total_assets,
        cast(total_liabilities as decimal(18, 2)) as total_liabilities,
        cast(current_assets as decimal(18, 2)) as current_assets,
        cast(current_liabilities as decimal(18, 2)) as current_liabilities,
        updated_at
{%- endmacro %}
