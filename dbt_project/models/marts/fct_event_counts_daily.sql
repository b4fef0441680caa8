{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

{#-
  Observed counts, and Horvitz-Thompson estimates of what they would be without sampling
  (docs/DESIGN.md, "Sampling"): an event kept at rate r stands for 1 / r events, a user for 1 / r
  users, where a user's rate is the largest rate among their events of the cell (the chance that
  sampling by user keeps them in it: they are in the cell when kept for any of those events).
-#}

with events as (
    select
        event_id,
        channel,
        event,
        occurred_at,
        user_id,
        sample_rate
    from {{ ref('stg_product__events') }}
    where {{ window_filter('occurred_at', 'day') }}
),

-- one row per distinct event id of a cell (an id stored under two timestamps counts once, at its larger rate)
cell_events as (
    select
        {{ utc_date('occurred_at') }} as day,
        channel,
        event,
        event_id,
        max(sample_rate) as sample_rate
    from events
    group by 1, 2, 3, 4
),

cell_users as (
    select
        {{ utc_date('occurred_at') }} as day,
        channel,
        event,
        user_id,
        max(sample_rate) as sample_rate
    from events
    group by 1, 2, 3, 4
),

event_counts as (
    select
        day,
        channel,
        event,
        count(*) as events,
        sum(1 / sample_rate::numeric) as estimated_events,
        min(sample_rate) as min_sample_rate
    from cell_events
    group by day, channel, event
),

user_counts as (
    select
        day,
        channel,
        event,
        count(*) as users,
        sum(1 / sample_rate::numeric) as estimated_users
    from cell_users
    group by day, channel, event
),

final as (
    select
        event_counts.day,
        event_counts.channel,
        event_counts.event,
        event_counts.events,
        user_counts.users,
        trim_scale(event_counts.estimated_events) as estimated_events,
        trim_scale(user_counts.estimated_users) as estimated_users,
        event_counts.min_sample_rate,
        {{ estimate_reliable('user_counts.users', 'event_counts.min_sample_rate') }} as estimate_reliable
    from event_counts
    inner join user_counts
        on user_counts.day = event_counts.day
        and user_counts.channel = event_counts.channel
        and user_counts.event = event_counts.event
)

select * from final
