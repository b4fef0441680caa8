{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

{#-
  The month's rows of fct_event_counts_daily, added up. An event belongs to one day (staging keeps one row per
  event id and timestamp, and the daily cell counts an id once), so the month's events and their estimate are
  the sums of the days'. Users are not: the daily mart keeps a count of distinct users per day, not their ids, so
  a month's distinct users cannot be had from it. The sum of the daily counts is published under the name of
  what it is, user_days (a user active on two days counts twice), never as users.
-#}

with days as (
    select
        day,
        channel,
        event,
        events,
        users,
        estimated_events,
        estimated_users,
        min_sample_rate
    from {{ ref('fct_event_counts_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

final as (
    select
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start,
        channel,
        event,
        count(*) as days_observed,
        sum(events)::bigint as events,
        sum(users)::bigint as user_days,
        trim_scale(sum(estimated_events)) as estimated_events,
        trim_scale(sum(estimated_users)) as estimated_user_days,
        min(min_sample_rate) as min_sample_rate
    from days
    group by 1, 2, 3
)

select * from final
