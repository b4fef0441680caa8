{{
    config(
        unique_key='week_start',
        tags=['weekly'],
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}

{#-
  Feature adoption per UTC week and (channel, event); trend rule in fct_feature_adoption_weekly.yml.
  A windowed run rewrites the window's weeks, the weeks of late arrivals and the week after each
  of those (its trend compares with them), reading each from raw with the week before it.
-#}

{%- set bounds = window_period_bounds('week') -%}
{%- set z = var('adoption_trend_z', 1.96) | float -%}
{%- set min_change = var('adoption_trend_min_change', 0.01) | float -%}
{%- set arrivals = ref('stg_product__event_arrivals') %}

with
{%- if bounds is not none %}
{%- set read_from = floor_to_grain(bounds.lower - modules.datetime.timedelta(days=product_late_arrival_days()), 'week') - modules.datetime.timedelta(days=7) %}

target_weeks as (
    {{ product_reopened_weeks(follow=1) }}
),

events as (
    select
        {{ utc_date(period_start('occurred_at', 'week')) }} as week_start,
        channel,
        event,
        user_id
    from {{ arrivals }}
    where occurred_at >= {{ timestamp_literal(read_from) }}
        and occurred_at < {{ timestamp_literal(bounds.upper) }}
        and (
            {{ utc_date(period_start('occurred_at', 'week')) }} in (select week_start from target_weeks)
            or {{ utc_date(period_start('occurred_at', 'week')) }} + 7 in (select week_start from target_weeks)
        )
),

{%- else %}

events as (
    select
        {{ utc_date(period_start('occurred_at', 'week')) }} as week_start,
        channel,
        event,
        user_id
    from {{ arrivals }}
),

{%- endif %}

active as (
    select
        week_start,
        count(distinct user_id) as active_users
    from events
    group by week_start
),

adopters as (
    select
        week_start,
        channel,
        event,
        count(distinct user_id) as adopters
    from events
    group by week_start, channel, event
),

-- the weeks to write: every week with active users ({% if bounds is not none %}among the target weeks{% else %}all of them{% endif %})
weeks as (
    select
        active.week_start,
        active.active_users,
        coalesce(previous.active_users, 0) as previous_active_users
    from active
    left join active as previous on previous.week_start = active.week_start - 7
    {%- if bounds is not none %}
    where active.week_start in (select week_start from target_weeks)
    {%- endif %}
),

-- an event seen this week or the week before
features as (
    select
        weeks.week_start,
        seen.channel,
        seen.event
    from weeks
    inner join adopters as seen
        on seen.week_start = weeks.week_start
        or seen.week_start = weeks.week_start - 7
    group by weeks.week_start, seen.channel, seen.event
),

shares as (
    select
        features.week_start,
        features.channel,
        features.event,
        coalesce(current_week.adopters, 0) as adopters,
        weeks.active_users,
        coalesce(previous_week.adopters, 0) as previous_adopters,
        weeks.previous_active_users
    from features
    inner join weeks on weeks.week_start = features.week_start
    left join adopters as current_week
        on current_week.week_start = features.week_start
        and current_week.channel = features.channel
        and current_week.event = features.event
    left join adopters as previous_week
        on previous_week.week_start = features.week_start - 7
        and previous_week.channel = features.channel
        and previous_week.event = features.event
),

tested as (
    select
        *,
        adopters::numeric / active_users as share,
        case when previous_active_users > 0 then previous_adopters::numeric / previous_active_users end as previous_share,
        case when previous_active_users > 0 then
            (adopters + previous_adopters)::numeric / (active_users + previous_active_users)
        end as pooled_share
    from shares
),

final as (
    select
        week_start,
        channel,
        event,
        adopters,
        active_users,
        trim_scale(share) as adoption_share,
        previous_adopters,
        previous_active_users,
        trim_scale(previous_share) as previous_adoption_share,
        trim_scale(share - previous_share) as share_change,
        -- a statistic, irrational in general: its double is as exact as it gets
        z_score::double precision as z_score,
        case
            when previous_share is null then null
            when z_score >= {{ z }} and share - previous_share >= {{ min_change }} then 'up'
            when z_score <= -{{ z }} and previous_share - share >= {{ min_change }} then 'down'
            else 'stable'
        end as trend
    from (
        select
            *,
            case when pooled_share > 0 and pooled_share < 1 then
                (share - previous_share)
                / sqrt(pooled_share * (1 - pooled_share) * (1.0 / active_users + 1.0 / previous_active_users))
            end as z_score
        from tested
    ) as with_z
)

select * from final
