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

  For events sampled by user, estimated_* are Horvitz-Thompson estimates of the counts without
  sampling (docs/DESIGN.md, "Sampling"). A user counts in cell (cohort, N) when sampling kept them
  active in the cohort week and in week cohort + N (exact), or in some week from it on
  (on_or_after). Sampling is nested, so that happens when they are kept at the smaller of the cohort
  week's rate and that week's rate (for on_or_after, the largest rate of those weeks), and the user
  weighs 1 / that rate. A week's rate is int_user_activity_weekly.sample_rate.
-#}

{%- set offsets = retention_weeks() %}

with activity as (
    select
        week_start,
        user_id,
        last_event_at,
        -- NULL in rows stored before sampling existed, which were not sampled
        coalesce(sample_rate, 1) as sample_rate
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

user_weeks as (
    select
        activity.user_id,
        users.cohort_week,
        (activity.week_start - users.cohort_week) / 7 as week_offset,
        coalesce(lag((activity.week_start - users.cohort_week) / 7) over by_user, -1) as previous_offset,
        first_value(activity.sample_rate) over by_user as cohort_rate,
        least(first_value(activity.sample_rate) over by_user, activity.sample_rate) as exact_rate,
        -- the largest rate of this and the later weeks (the default frame, read backwards)
        least(
            first_value(activity.sample_rate) over by_user,
            max(activity.sample_rate) over (partition by activity.user_id order by activity.week_start desc)
        ) as on_or_after_rate
    from activity
    inner join users on users.user_id = activity.user_id
    window by_user as (partition by activity.user_id order by activity.week_start)
),

estimated_cohorts as (
    select
        cohort_week,
        sum(1 / cohort_rate::numeric) as estimated_users,
        min(cohort_rate) as min_sample_rate
    from user_weeks
    where week_offset = 0
    group by cohort_week
),

estimated_exact as (
    select
        cohort_week,
        week_offset,
        sum(1 / exact_rate::numeric) as estimated_users,
        min(exact_rate) as min_sample_rate
    from user_weeks
    where week_offset <= {{ offsets }}
    group by cohort_week, week_offset
),

-- a week of activity stands for the offsets N whose earliest active week at or after cohort + N it is:
-- those after the user's previous active week, up to its own
estimated_on_or_after as (
    select
        user_weeks.cohort_week,
        offsets.week_offset,
        sum(1 / user_weeks.on_or_after_rate::numeric) as estimated_users,
        min(user_weeks.on_or_after_rate) as min_sample_rate
    from user_weeks
    inner join generate_series(0, {{ offsets }}) as offsets (week_offset)
        on offsets.week_offset > user_weeks.previous_offset
        and offsets.week_offset <= user_weeks.week_offset
    group by user_weeks.cohort_week, offsets.week_offset
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
            as retention_on_or_after,
        trim_scale(estimated_cohorts.estimated_users) as estimated_cohort_size,
        case when cells.is_mature then trim_scale(coalesce(estimated_exact.estimated_users, 0)) end
            as estimated_users_exact,
        case when cells.is_mature then trim_scale(coalesce(estimated_on_or_after.estimated_users, 0)) end
            as estimated_users_on_or_after,
        least(estimated_cohorts.min_sample_rate, estimated_exact.min_sample_rate, estimated_on_or_after.min_sample_rate)
            as min_sample_rate,
        case when cells.is_mature then {{ estimate_reliable(
            'coalesce(exact.users, 0)',
            'least(estimated_cohorts.min_sample_rate, estimated_exact.min_sample_rate, estimated_on_or_after.min_sample_rate)'
        ) }} end as estimate_reliable
    from cells
    left join exact
        on exact.cohort_week = cells.cohort_week
        and exact.week_offset = cells.week_offset
    left join on_or_after
        on on_or_after.cohort_week = cells.cohort_week
        and on_or_after.week_offset = cells.week_offset
    inner join estimated_cohorts on estimated_cohorts.cohort_week = cells.cohort_week
    left join estimated_exact
        on estimated_exact.cohort_week = cells.cohort_week
        and estimated_exact.week_offset = cells.week_offset
    left join estimated_on_or_after
        on estimated_on_or_after.cohort_week = cells.cohort_week
        and estimated_on_or_after.week_offset = cells.week_offset
)

select * from final
