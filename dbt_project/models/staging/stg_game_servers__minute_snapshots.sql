with source as (
    select * from {{ source('game_servers', 'minute_snapshots') }}
),

-- one row per natural key: copies of a snapshot carry the same minute, so the day
-- partition key is part of it and filters on `minute` still prune partitions through this view
deduplicated as (
    select distinct on (server_id, minute)
        *
    from source
    order by server_id, minute, ingested_at, batch_id
),

final as (
    select
        server_id,
        minute,
        player as player_user_ids,
        spectator as spectator_user_ids,
        lobby as lobby_user_ids,
        menu as menu_user_ids,
        total as total_user_ids,
        battles_total,
        battles_lobby,
        battles_in_progress,
        battle_ids,
        ingested_at
    from deduplicated
)

select * from final
