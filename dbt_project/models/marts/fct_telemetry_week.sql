{{
    config(
        unique_key='week_start',
        tags=['weekly'],
    )
}}

{%- set states = user_states() %}

with days as (
    select
        day,
        minutes_observed,
        accounts_created,
        {%- for state in states %}
        minutes_{{ state }},
        peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_telemetry_day') }}
    where {{ window_filter_date('day', 'week') }}
),

user_minutes as (
    select
        day,
        user_id,
        state
    from {{ ref('fct_minutes_per_user_daily') }}
    where {{ window_filter_date('day', 'week') }}
      and state in ('total', 'player')
),

snapshots as (
    select
        minute,
        battle_ids
    from {{ ref('stg_game_servers__minute_snapshots') }}
    where {{ window_filter('minute', 'week') }}
),

-- minutes add up over days; peaks are the largest daily peak
week_sums as (
    select
        date_trunc('week', day::timestamp)::date as week_start,
        count(*) as days_observed,
        sum(minutes_observed)::bigint as minutes_observed,
        sum(accounts_created)::bigint as accounts_created,
        {%- for state in states %}
        sum(minutes_{{ state }})::bigint as minutes_{{ state }},
        max(peak_{{ state }}) as peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from days
    group by 1
),

-- unique users and players are distinct over the whole week, never a sum of daily counts
week_uniques as (
    select
        date_trunc('week', day::timestamp)::date as week_start,
        count(distinct user_id) filter (where state = 'total') as unique_users,
        count(distinct user_id) filter (where state = 'player') as unique_players
    from user_minutes
    group by 1
),

week_battles as (
    select
        {{ utc_date(period_start('snapshots.minute', 'week')) }} as week_start,
        count(distinct listed.battle_id) as battles
    from snapshots
    cross join lateral unnest(snapshots.battle_ids) as listed (battle_id)
    group by 1
),

weeks_with_battle_ids as (
    select distinct
        {{ utc_date(period_start('minute', 'week')) }} as week_start
    from snapshots
    where battle_ids is not null
),

final as (
    select
        week_sums.week_start,
        week_sums.days_observed,
        week_sums.minutes_observed,
        coalesce(week_uniques.unique_users, 0) as unique_users,
        coalesce(week_uniques.unique_players, 0) as unique_players,
        week_sums.accounts_created,
        case
            when weeks_with_battle_ids.week_start is not null then coalesce(week_battles.battles, 0)
        end as battles,
        {%- for state in states %}
        week_sums.minutes_{{ state }},
        {%- endfor %}
        {%- for state in states %}
        week_sums.peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from week_sums
    left join week_uniques on week_uniques.week_start = week_sums.week_start
    left join week_battles on week_battles.week_start = week_sums.week_start
    left join weeks_with_battle_ids on weeks_with_battle_ids.week_start = week_sums.week_start
)

select * from final
