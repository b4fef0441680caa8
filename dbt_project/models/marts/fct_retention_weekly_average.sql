{{
    config(
        materialized='table',
        tags=['weekly'],
    )
}}

-- The average retention curve: per week offset, retained users over cohort users summed across
-- the cohorts whose cell has matured (so cohorts weigh by their size; unknown cells count nowhere).
with cells as (
    select * from {{ ref('fct_retention_weekly') }}
),

final as (
    select
        week_offset,
        count(*) filter (where is_mature) as cohorts,
        coalesce(sum(cohort_size) filter (where is_mature), 0)::bigint as cohort_users,
        coalesce(sum(users_exact) filter (where is_mature), 0)::bigint as users_exact,
        coalesce(sum(users_on_or_after) filter (where is_mature), 0)::bigint as users_on_or_after,
        trim_scale(sum(users_exact) filter (where is_mature)::numeric / nullif(sum(cohort_size) filter (where is_mature), 0))
            as retention_exact,
        trim_scale(
            sum(users_on_or_after) filter (where is_mature)::numeric / nullif(sum(cohort_size) filter (where is_mature), 0)
        ) as retention_on_or_after
    from cells
    group by week_offset
)

select * from final
