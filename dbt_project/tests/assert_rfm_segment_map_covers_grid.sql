-- The seed rfm_segment_map must name every (R, F) cell of the 5 x 5 grid exactly once.
-- Returns the cells that are missing or duplicated.
with scores as (
    select 1 as score union all select 2 union all select 3 union all select 4 union all select 5
),

grid as (
    select r.score as r_score, f.score as f_score
    from scores as r
    cross join scores as f
),

cells as (
    select r_score, f_score, count(*) as entries
    from {{ ref('rfm_segment_map') }}
    group by r_score, f_score
)

select
    coalesce(grid.r_score, cells.r_score) as r_score,
    coalesce(grid.f_score, cells.f_score) as f_score,
    coalesce(cells.entries, 0) as entries
from grid
full outer join cells on grid.r_score = cells.r_score and grid.f_score = cells.f_score
where coalesce(cells.entries, 0) <> 1 or grid.r_score is null
