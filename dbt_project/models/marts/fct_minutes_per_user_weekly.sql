{{
    config(
        unique_key='week_start',
        tags=['weekly'],
        post_hook="create index if not exists {{ this.name }}_week_start on {{ this }} (week_start)",
    )
}}

-- a minute belongs to exactly one day, so a user's distinct minutes over a week are the sum
-- of their distinct minutes over its days
with daily as (
    select
        day,
        user_id,
        state,
        minutes
    from {{ ref('fct_minutes_per_user_daily') }}
    where {{ window_filter_date('day', 'week') }}
),

weekly as (
    select
        (date_trunc('week', day::timestamp))::date as week_start,
        user_id,
        state,
        sum(minutes)::bigint as minutes
    from daily
    group by 1, 2, 3
),

final as (
    select
        week_start,
        user_id,
        state,
        minutes
    from weekly
)

select * from final
