{{
    config(
        unique_key='day',
        tags=['daily'],
        post_hook="create index if not exists {{ this.name }}_day on {{ this }} (day)",
    )
}}

with user_minutes as (
    select
        minute,
        state,
        user_id
    from {{ ref('int_snapshot_user_minutes') }}
    where {{ window_filter('minute', 'day') }}
),

minutes_per_user as (
    select
        {{ utc_date('minute') }} as day,
        user_id,
        state,
        count(*) as minutes
    from user_minutes
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
