{{
    config(
        materialized='table',
        tags=['weekly'],
    )
}}

{#-
  Weekly retention (docs/DESIGN.md item 5), rebuilt whole at every run from
  int_user_activity_weekly (one row per user and active week; small next to the events): every
  cell of every cohort can change when a week ends or late data arrives, and on_or_after cells
  depend on all later weeks, so a partial rewrite would buy nothing.
-#}

{%- set offsets = retention_weeks() %}

with activity as (
    select
        week_start,
        user_id,
        last_event_at
    from {{ ref('int_user_activity_weekly') }}
),

data_end as (
    select max(last_event_at) as latest_event_at
    from activity
),

users as (
    select
        user_id,
        min(week_start) as cohort_week,
        max(week_start) as last_active_week
    from activity
    group by user_id
),

cohorts as (
    select
        cohort_week,
        count(*) as cohort_size
    from users
    group by cohort_week
),

exact as (
    select
        users.cohort_week,
        (activity.week_start - users.cohort_week) / 7 as week_offset,
        count(*) as users
    from activity
    inner join users on users.user_id = activity.user_id
    where activity.week_start - users.cohort_week <= {{ offsets * 7 }}
    group by 1, 2
),

on_or_after as (
    select
        users.cohort_week,
        offsets.week_offset,
        count(*) filter (where users.last_active_week >= users.cohort_week + offsets.week_offset * 7) as users
    from users
    cross join generate_series(0, {{ offsets }}) as offsets (week_offset)
    group by 1, 2
),

cells as (
    select
        cohorts.cohort_week,
        offsets.week_offset,
        cohorts.cohort_week + offsets.week_offset * 7 as activity_week,
        cohorts.cohort_size,
        -- the week has ended by the end of the data: its last instant is covered
        ((cohorts.cohort_week + offsets.week_offset * 7 + 7)::timestamp at time zone 'UTC') <= data_end.latest_event_at
            as is_mature
    from cohorts
    cross join generate_series(0, {{ offsets }}) as offsets (week_offset)
    cross join data_end
),

final as (
    select
        cells.cohort_week,
        cells.week_offset,
        cells.activity_week,
        cells.cohort_size,
        cells.is_mature,
        case when cells.is_mature then coalesce(exact.users, 0) end as users_exact,
        case when cells.is_mature then on_or_after.users end as users_on_or_after,
        case when cells.is_mature then trim_scale(coalesce(exact.users, 0)::numeric / cells.cohort_size) end
            as retention_exact,
        case when cells.is_mature then trim_scale(on_or_after.users::numeric / cells.cohort_size) end
            as retention_on_or_after
    from cells
    left join exact
        on exact.cohort_week = cells.cohort_week
        and exact.week_offset = cells.week_offset
    left join on_or_after
        on on_or_after.cohort_week = cells.cohort_week
        and on_or_after.week_offset = cells.week_offset
)

select * from final
