with snapshot_users as (
    select * from {{ ref('stg_game_servers__snapshot_users') }}
),

-- a user counts once per minute and state, however many servers list them
distinct_user_minutes as (
    select distinct
        minute,
        state,
        user_id
    from snapshot_users
)

select * from distinct_user_minutes
