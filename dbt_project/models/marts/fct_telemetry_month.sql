{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

{#- The month's rows of the daily marts only, never raw: by the time a month has ended, the weekly cleanup has
    dropped most of its raw partitions. That is why there is no `battles` column: distinct battle ids over a
    month would need the snapshots, and a sum of the daily distinct counts would count a battle that spans
    midnight twice. -#}
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
    where {{ window_filter_date('day', 'month') }}
),

user_minutes as (
    select
        day,
        user_id,
        state
    from {{ ref('fct_minutes_per_user_daily') }}
    where {{ window_filter_date('day', 'month') }}
      and state in ('total', 'player')
),

-- minutes add up over days; peaks are the largest daily peak
month_sums as (
    select
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start,
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

-- unique users and players are distinct over the whole month, never a sum of daily counts
month_uniques as (
    select
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start,
        count(distinct user_id) filter (where state = 'total') as unique_users,
        count(distinct user_id) filter (where state = 'player') as unique_players
    from user_minutes
    group by 1
),

final as (
    select
        month_sums.month_start,
        month_sums.days_observed,
        month_sums.minutes_observed,
        coalesce(month_uniques.unique_users, 0) as unique_users,
        coalesce(month_uniques.unique_players, 0) as unique_players,
        month_sums.accounts_created,
        {%- for state in states %}
        month_sums.minutes_{{ state }},
        {%- endfor %}
        {%- for state in states %}
        month_sums.peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from month_sums
    left join month_uniques on month_uniques.month_start = month_sums.month_start
)

select * from final
