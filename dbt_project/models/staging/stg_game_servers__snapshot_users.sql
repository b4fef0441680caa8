with snapshots as (
    select * from {{ ref('stg_game_servers__minute_snapshots') }}
),

-- one row per user id listed in a state list of a snapshot (snapshots is read once, so
-- filters on `minute` still reach the raw partitions)
unnested as (
    select
        snapshots.server_id,
        snapshots.minute,
        state_lists.state,
        listed.user_id
    from snapshots
    cross join lateral (
        values
        {%- for state in user_states() %}
            ('{{ state }}'::text, snapshots.{{ state }}_user_ids){{ "," if not loop.last }}
        {%- endfor %}
    ) as state_lists (state, user_ids)
    cross join lateral unnest(state_lists.user_ids) as listed (user_id)
)

select * from unnested
