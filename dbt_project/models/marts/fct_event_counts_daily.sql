{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

with events as (
    select
        event_id,
        channel,
        event,
        occurred_at,
        user_id
    from {{ ref('stg_product__events') }}
    where {{ window_filter('occurred_at', 'day') }}
),

counts as (
    select
        {{ utc_date('occurred_at') }} as day,
        channel,
        event,
        count(distinct event_id) as events,
        count(distinct user_id) as users
    from events
    group by 1, 2, 3
),

final as (
    select
        day,
        channel,
        event,
        events,
        users
    from counts
)

select * from final
