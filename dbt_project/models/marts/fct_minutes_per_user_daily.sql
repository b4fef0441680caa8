{{
    config(
        unique_key='day',
        tags=['daily'],
        post_hook="create index if not exists {{ this.name }}_day on {{ this }} (day)",
    )
}}

with snapshot_users as (
    select
        minute,
        state,
        user_id
    from {{ ref('stg_game_servers__snapshot_users') }}
    where {{ window_filter('minute', 'day') }}
),

-- distinct minutes: a user listed on two servers in the same minute counts once
minutes_per_user as (
    select
        {{ utc_date('minute') }} as day,
        user_id,
        state,
        count(distinct minute) as minutes
    from snapshot_users
    group by 1, 2, 3
),

final as (
    select
        day,
        user_id,
        state,
        minutes
    from minutes_per_user
)

select * from final
