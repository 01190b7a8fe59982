-- Every indicator's bins tile the real line: the first starts at -999999999 (minus
-- infinity), the last ends at 999999999 (plus infinity), and each bin starts exactly
-- where the previous one ends.
with bins as (
    select
        indicator,
        bin_order,
        lower_bound,
        upper_bound,
        lag(upper_bound) over (partition by indicator order by bin_order) as previous_upper,
        row_number() over (partition by indicator order by bin_order) as position,
        count(*) over (partition by indicator) as bin_count
    from {{ ref('credit_scorecard_bins') }}
)

select *
from bins
where (position = 1 and lower_bound <> -999999999)
   or (position = bin_count and upper_bound <> 999999999)
   or (position > 1 and lower_bound <> previous_upper)
   or lower_bound >= upper_bound
