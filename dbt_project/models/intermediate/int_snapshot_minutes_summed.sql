with snapshots as (
    select * from {{ ref('stg_game_servers__minute_snapshots') }}
),

-- all servers' snapshots of one minute summed into one global minute: battle counts added,
-- state list lengths added (a user listed on two servers counts on both)
summed as (
    select
        minute,
        count(*) as servers,
        sum(battles_total)::bigint as battles_total,
        sum(battles_lobby)::bigint as battles_lobby,
        sum(battles_in_progress)::bigint as battles_in_progress,
        {%- for state in user_states() %}
        sum(cardinality({{ state }}_user_ids))::bigint as {{ state }}_count{{ "," if not loop.last }}
        {%- endfor %}
    from snapshots
    group by minute
)

select * from summed
