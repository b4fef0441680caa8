{{
    config(
        unique_key='month_start',
        tags=['monthly'],
        post_hook="create index if not exists {{ this.name }}_month_start on {{ this }} (month_start)",
    )
}}

-- a minute belongs to exactly one day, so a user's distinct minutes over a month are the sum of their distinct
-- minutes over its days; the quarter and year marts count their distinct users over these rows
with daily as (
    select
        day,
        user_id,
        state,
        minutes
    from {{ ref('fct_minutes_per_user_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

monthly as (
    select
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start,
        user_id,
        state,
        sum(minutes)::bigint as minutes,
        count(*) as days_active
    from daily
    group by 1, 2, 3
),

final as (
    select
        month_start,
        user_id,
        state,
        minutes,
        days_active
    from monthly
)

select * from final
