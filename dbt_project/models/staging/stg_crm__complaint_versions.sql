-- Every version of every row of raw.complaints, as extracted, with its bookkeeping
-- columns. stg_crm__complaints picks the run date's version,
-- int_credit_complaints_at_cutoff the version known at the end of the previous quarter.
{#- One SELECT without a WITH clause, so that PostgreSQL flattens the view into its
    readers and their filters on the bookkeeping columns are applied while raw is read. #}
select * from {{ source('raw', 'complaints') }}
