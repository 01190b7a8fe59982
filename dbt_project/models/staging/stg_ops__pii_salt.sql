-- The salt of the hashed keys of personal data, kept by the pipeline in ops.pii_salt.
-- Always exactly one row (an empty table gives an empty salt rather than no row, so a
-- join never drops contacts).
select coalesce(max(salt), '') as salt
from {{ source('ops', 'pii_salt') }}
