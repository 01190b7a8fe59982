-- Every version of every row of raw.financial_statements, as extracted, with its
-- bookkeeping columns. stg_crm__financial_statements picks the run date's version,
-- int_credit_statements_at_cutoff the version known at the end of the previous quarter.
{#- One SELECT without a WITH clause, so that PostgreSQL flattens the view into its
    readers and their filters on the bookkeeping columns are applied while raw is read. #}
select * from {{ source('raw', 'financial_statements') }}
