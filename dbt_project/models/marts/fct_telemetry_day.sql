{{
    config(
        unique_key='day',
        tags=['daily'],
        pre_hook=["set local jit = off", "set local work_mem = '256MB'"],
    )
}}

{%- set segment_length = segment_minutes() %}
{%- set segment_count = 1440 // segment_length %}
{%- set states = user_states() %}
{%- set battle_kinds = ['total', 'lobby', 'in_progress'] %}

with global_minutes as (
    select * from {{ ref('int_snapshot_minutes_summed') }}
    where {{ window_filter('minute', 'day') }}
),

user_minutes as (
    select
        day,
        user_id,
        state,
        minutes
    from {{ ref('fct_minutes_per_user_daily') }}
    where {{ window_filter_date('day', 'day') }}
),

accounts as (
    select
        user_id,
        created_at
    from {{ ref('stg_product__accounts_created') }}
    where {{ window_filter('created_at', 'day') }}
),

snapshots as (
    select
        minute,
        battle_ids
    from {{ ref('stg_game_servers__minute_snapshots') }}
    where {{ window_filter('minute', 'day') }}
),

-- a day gets a row when at least one snapshot of it landed
days as (
    select distinct
        {{ utc_date('minute') }} as day
    from global_minutes
),

segments as (
    select
        days.day,
        segment_index
    from days
    cross join generate_series(0, {{ segment_count - 1 }}) as segment_index
),

minutes_in_segments as (
    select
        {{ utc_date('minute') }} as day,
        floor(
            extract(epoch from minute - date_trunc('day', minute, 'UTC')) / {{ segment_length * 60 }}
        )::integer as segment_index,
        {%- for kind in battle_kinds %}
        battles_{{ kind }},
        {%- endfor %}
        {%- for state in states %}
        {{ state }}_count{{ "," if not loop.last }}
        {%- endfor %}
    from global_minutes
),

segment_stats as (
    select
        day,
        segment_index,
        count(*) as minutes_observed,
        {%- for kind in battle_kinds %}
        sum(battles_{{ kind }})::bigint as battles_{{ kind }}_sum,
        {%- endfor %}
        {%- for state in states %}
        sum({{ state }}_count)::bigint as {{ state }}_user_minutes,
        max({{ state }}_count) as {{ state }}_peak{{ "," if not loop.last }}
        {%- endfor %}
    from minutes_in_segments
    group by day, segment_index
),

-- every segment of the day, empty ones (no minute observed) as zeros
segment_values as (
    select
        segments.day,
        segments.segment_index,
        coalesce(segment_stats.minutes_observed, 0) as minutes_observed,
        {%- for kind in battle_kinds %}
        case
            when segment_stats.minutes_observed > 0
                then trim_scale(segment_stats.battles_{{ kind }}_sum::numeric / segment_stats.minutes_observed)
            else 0
        end as battles_{{ kind }},
        {%- endfor %}
        {%- for state in states %}
        coalesce(segment_stats.{{ state }}_user_minutes, 0) as {{ state }}_user_minutes,
        case
            when segment_stats.minutes_observed > 0
                then trim_scale(segment_stats.{{ state }}_user_minutes::numeric / segment_stats.minutes_observed)
            else 0
        end as {{ state }}_average,
        coalesce(segment_stats.{{ state }}_peak, 0) as {{ state }}_peak{{ "," if not loop.last }}
        {%- endfor %}
    from segments
    left join segment_stats
        on segment_stats.day = segments.day
        and segment_stats.segment_index = segments.segment_index
),

segment_lists as (
    select
        day,
        sum(minutes_observed)::bigint as minutes_observed,
        {%- for kind in battle_kinds %}
        jsonb_agg(battles_{{ kind }} order by segment_index) as battles_{{ kind }}_list,
        {%- endfor %}
        {%- for state in states %}
        sum({{ state }}_user_minutes)::bigint as {{ state }}_minutes,
        max({{ state }}_peak) as {{ state }}_peak,
        jsonb_agg({{ state }}_user_minutes order by segment_index) as {{ state }}_user_minutes_list,
        jsonb_agg({{ state }}_average order by segment_index) as {{ state }}_average_list,
        jsonb_agg({{ state }}_peak order by segment_index) as {{ state }}_peak_list{{ "," if not loop.last }}
        {%- endfor %}
    from segment_values
    group by day
),

user_maps as (
    select
        day,
        count(*) filter (where state = 'total') as unique_users,
        count(*) filter (where state = 'player') as unique_players,
        {%- for state in states %}
        coalesce(
            jsonb_object_agg(user_id::text, minutes) filter (where state = '{{ state }}'),
            '{}'::jsonb
        ) as {{ state }}_minutes_per_user{{ "," if not loop.last }}
        {%- endfor %}
    from user_minutes
    group by day
),

accounts_per_day as (
    select
        {{ utc_date('created_at') }} as day,
        count(distinct user_id) as accounts_created
    from accounts
    group by 1
),

-- distinct battles, only known when snapshots carry battle ids
battles_per_day as (
    select
        {{ utc_date('snapshots.minute') }} as day,
        count(distinct listed.battle_id) as battles
    from snapshots
    cross join lateral unnest(snapshots.battle_ids) as listed (battle_id)
    group by 1
),

days_with_battle_ids as (
    select distinct
        {{ utc_date('minute') }} as day
    from snapshots
    where battle_ids is not null
),

day_figures as (
    select
        segment_lists.*,
        coalesce(user_maps.unique_users, 0) as unique_users,
        coalesce(user_maps.unique_players, 0) as unique_players,
        {%- for state in states %}
        coalesce(user_maps.{{ state }}_minutes_per_user, '{}'::jsonb) as {{ state }}_minutes_per_user,
        {%- endfor %}
        coalesce(accounts_per_day.accounts_created, 0) as accounts_created,
        case
            when days_with_battle_ids.day is not null then coalesce(battles_per_day.battles, 0)
        end as battles
    from segment_lists
    left join user_maps on user_maps.day = segment_lists.day
    left join accounts_per_day on accounts_per_day.day = segment_lists.day
    left join battles_per_day on battles_per_day.day = segment_lists.day
    left join days_with_battle_ids on days_with_battle_ids.day = segment_lists.day
),

final as (
    select
        day,
        {{ segment_length }} as segment_minutes,
        {{ segment_count }} as segment_count,
        minutes_observed,
        unique_users,
        unique_players,
        accounts_created,
        battles,
        {%- for state in states %}
        {{ state }}_minutes as minutes_{{ state }},
        {%- endfor %}
        {%- for state in states %}
        {{ state }}_peak as peak_{{ state }},
        {%- endfor %}
        jsonb_build_object(
            'battles', jsonb_build_object(
                {%- for kind in battle_kinds %}
                '{{ kind }}', battles_{{ kind }}_list{{ "," if not loop.last }}
                {%- endfor %}
            ),
            'aggregates', jsonb_build_object(
                'stats', jsonb_build_object(
                    'accounts_created', accounts_created,
                    'unique_users', unique_users,
                    'unique_players', unique_players,
                    'peak_user_counts', jsonb_build_object(
                        {%- for state in states %}
                        '{{ state }}', {{ state }}_peak{{ "," if not loop.last }}
                        {%- endfor %}
                    ),
                    'battles', battles
                ),
                'minutes', jsonb_build_object(
                    {%- for state in states %}
                    '{{ state }}', {{ state }}_minutes{{ "," if not loop.last }}
                    {%- endfor %}
                )
            ),
            'user_counts', jsonb_build_object(
                {%- for state in states %}
                '{{ state }}', {{ state }}_user_minutes_list{{ "," if not loop.last }}
                {%- endfor %}
            ),
            'average_user_counts', jsonb_build_object(
                {%- for state in states %}
                '{{ state }}', {{ state }}_average_list{{ "," if not loop.last }}
                {%- endfor %}
            ),
            'minutes_per_user', jsonb_build_object(
                {%- for state in states %}
                '{{ state }}', {{ state }}_minutes_per_user{{ "," if not loop.last }}
                {%- endfor %}
            )
        ) as day_log,
        -- outside day_log, whose shape is the original document's, which has no per-segment peaks
        jsonb_build_object(
            {%- for state in states %}
            '{{ state }}', {{ state }}_peak_list{{ "," if not loop.last }}
            {%- endfor %}
        ) as segment_peak_user_counts
    from day_figures
)

select * from final
