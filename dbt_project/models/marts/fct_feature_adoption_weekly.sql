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
  Beside the observed counts, Horvitz-Thompson estimates for events sampled by user (docs/DESIGN.md,
  "Sampling"): a user weighs 1 / the largest sample_rate among their events of the count (the week's
  events of one kind for adopters, all of them for active users). The trend is decided on the
  observed shares: a share over the sampled users is itself the estimate of the share when the rate
  is one for all the product's events, and its test then has the sampled users' counts as n.
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
        user_id,
        sample_rate
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
        user_id,
        sample_rate
    from {{ arrivals }}
),

{%- endif %}

active as (
    select
        week_start,
        count(*) as active_users,
        sum(1 / sample_rate::numeric) as estimated_active_users,
        min(sample_rate) as min_sample_rate
    from (
        select
            week_start,
            user_id,
            max(sample_rate) as sample_rate
        from events
        group by week_start, user_id
    ) as active_user_weeks
    group by week_start
),

-- per week, feature and adopter: their events (the rows of arrivals are distinct events) and rate
adopter_weeks as (
    select
        week_start,
        channel,
        event,
        user_id,
        count(*) as events,
        sum(1 / sample_rate::numeric) as estimated_events,
        max(sample_rate) as sample_rate,
        min(sample_rate) as min_sample_rate
    from events
    group by week_start, channel, event, user_id
),

adopters as (
    select
        week_start,
        channel,
        event,
        count(*) as adopters,
        sum(events) as events,
        sum(estimated_events) as estimated_events,
        sum(1 / sample_rate::numeric) as estimated_adopters,
        min(min_sample_rate) as min_sample_rate
    from adopter_weeks
    group by week_start, channel, event
),

-- the weeks to write: every week with active users ({% if bounds is not none %}among the target weeks{% else %}all of them{% endif %})
weeks as (
    select
        active.week_start,
        active.active_users,
        active.estimated_active_users,
        active.min_sample_rate as active_min_sample_rate,
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
        weeks.previous_active_users,
        coalesce(current_week.events, 0) as events,
        coalesce(current_week.estimated_events, 0) as estimated_events,
        coalesce(current_week.estimated_adopters, 0) as estimated_adopters,
        weeks.estimated_active_users,
        -- a feature no sampled user had this week: whether anything was sampled is the week's question
        coalesce(current_week.min_sample_rate, weeks.active_min_sample_rate) as min_sample_rate
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
        end as trend,
        events,
        trim_scale(estimated_events) as estimated_events,
        trim_scale(estimated_adopters) as estimated_adopters,
        trim_scale(estimated_active_users) as estimated_active_users,
        min_sample_rate,
        {{ estimate_reliable('adopters', 'min_sample_rate') }} as estimate_reliable
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
