{#-
  Funnel marts (docs/DESIGN.md item 4) from the chosen attempts of int_funnel_attempts.

  `funnel_period_choices(grain, where)`: per funnel, user and UTC week or calendar month (`grain`) the
  chosen attempt, which is the deepest of the user's daily chosen attempts of the period, the earliest
  entry on ties (the same as choosing among all the period's attempts, since each day's choice is that
  day's deepest and earliest). `where` filters int_funnel_attempts (on entry_day, to keep the scan small).
  A monthly run reads int_funnel_attempts as the daily runs left it, so the month is rebuilt whole from
  its days, with no late-arrival bookkeeping of its own: a day reopened by late events is rewritten by
  the daily run, and the month by the next monthly run over it.

  `funnel_chosen_in_window(period)`: what the marts of `period` ('day' or 'week') summarise: the
  chosen attempts (per day; per week as funnel_period_choices) of the entry days, or weeks, that
  int_funnel_attempts recomputed in this run (window_period_bounds, macros/product.sql), all of them
  when no window is set. The model declares its own dependency on `funnels`: the window, and with
  it this ref, is known only when the model runs, not when dbt parses it.

  `funnel_summary(chosen, period)`: one row per period, funnel and declared step, from `chosen`
  (one row per user and period: period, funnel, depth, step_seconds, step_inclusion_rates,
  is_immature):
    users                     chosen attempts that reached at least the step
    conversion_from_start     users / users at step 1
    conversion_from_previous  users / users at the previous step; 1 at step 1 (every entrant
                              reached it, as PostHog shows it)
  Conversions are exact (numeric division, never rounded): rounding is for display.
  With `breakdown=true` (fct_funnel_breakdown_*), `chosen` also has breakdown_value: only the
  funnels that declare a breakdown, one row per period, funnel, breakdown value and step, every
  column computed within the value (so users, immature, drop_off and estimated_users sum over the
  values to the overall row).
    immature                  chosen attempts that stopped at the previous step and whose
                              window is still open (not drop-off)
    drop_off                  users at the previous step - users - immature (null for step 1)
    median / p90 seconds      percentile_cont over the users of (step time - entry time)
  and for events sampled by user (docs/DESIGN.md, "Sampling"):
    estimated_users           sum over the users of 1 / the step's inclusion rate (the smallest
                              sample_rate of the events that filled steps 1..k), Horvitz-Thompson
    min_sample_rate           the smallest of those rates (null without users)
    estimate_reliable         at least 30 sampled users, or nothing sampled in the period's funnel
-#}

{% macro funnel_period_choices(grain, where='true') -%}
    {%- set column = period_column(grain) %}
    {%- set period = utc_date(period_start("attempts.entry_day::timestamp at time zone 'UTC'", grain)) %}
    select
        ranked.funnel,
        ranked.{{ column }},
        ranked.user_id,
        ranked.entry_event_id,
        ranked.entry_at,
        ranked.entry_day,
        ranked.depth,
        ranked.converted,
        ranked.matched_event_ids,
        ranked.step_seconds,
        ranked.step_inclusion_rates,
        ranked.is_immature,
        ranked.breakdown_value
    from (
        select
            attempts.*,
            {{ period }} as {{ column }},
            row_number() over (
                partition by attempts.funnel, attempts.user_id, {{ period }}
                order by attempts.depth desc, attempts.entry_at, attempts.entry_event_id
            ) as period_rank
        from {{ ref('int_funnel_attempts') }} as attempts
        where attempts.is_chosen and {{ where }}
    ) as ranked
    where ranked.period_rank = 1
{%- endmacro %}

{% macro funnel_chosen_in_window(period) -%}
    {%- set bounds = window_period_bounds(period) %}
    {%- if period == 'week' %}
    {%- if bounds is none %}
    {{ funnel_period_choices('week') }}
    {%- else %}
    {%- set earliest = bounds.lower - modules.datetime.timedelta(days=product_late_arrival_days() + 7) %}
    {{ funnel_period_choices('week',
        "attempts.entry_day >= '" ~ earliest.date().isoformat() ~ "'::date"
        ~ " and attempts.entry_day < '" ~ bounds.upper.date().isoformat() ~ "'::date"
        ~ " and date_trunc('week', attempts.entry_day::timestamp) in ("
        ~ "select date_trunc('week', reopened.day::timestamp) from (" ~ funnel_reopened_days(ref('funnels')) ~ ") as reopened)"
    ) }}
    {%- endif %}
    {%- else %}
    select
        entry_day as day,
        funnel,
        depth,
        step_seconds,
        step_inclusion_rates,
        is_immature,
        breakdown_value
    from {{ ref('int_funnel_attempts') }}
    where is_chosen
    {%- if bounds is not none %}
    {%- set earliest = bounds.lower - modules.datetime.timedelta(days=product_late_arrival_days() + 1) %}
        and entry_day >= '{{ earliest.date().isoformat() }}'::date
        and entry_day < '{{ bounds.upper.date().isoformat() }}'::date
        and entry_day in ({{ funnel_reopened_days(ref('funnels')) }})
    {%- endif %}
    {%- endif %}
{%- endmacro %}

{% macro funnel_summary(chosen, period, breakdown=false) -%}
{#- with `breakdown`, one row per breakdown value too, of the funnels that declare a breakdown -#}
{%- set groups = period ~ ', funnel' ~ (', breakdown_value' if breakdown else '') -%}
with steps as (
    select
        funnel,
        step,
        channel,
        event
    from {{ ref('funnel_steps') }}
),

per_step as (
    select
        chosen.{{ period }},
        chosen.funnel,
        {%- if breakdown %}
        chosen.breakdown_value,
        {%- endif %}
        steps.step,
        steps.channel,
        steps.event,
        count(*) filter (where chosen.depth >= steps.step) as users,
        count(*) filter (where chosen.depth = steps.step - 1 and chosen.is_immature) as immature,
        coalesce(
            sum(1 / (chosen.step_inclusion_rates ->> (steps.step - 1))::numeric) filter (where chosen.depth >= steps.step),
            0
        ) as estimated_users,
        min((chosen.step_inclusion_rates ->> (steps.step - 1))::double precision) filter (where chosen.depth >= steps.step)
            as min_sample_rate,
        percentile_cont(0.5) within group (order by (chosen.step_seconds ->> (steps.step - 1))::double precision)
            filter (where chosen.depth >= steps.step) as median_seconds_to_step,
        percentile_cont(0.9) within group (order by (chosen.step_seconds ->> (steps.step - 1))::double precision)
            filter (where chosen.depth >= steps.step) as p90_seconds_to_step
    from {{ chosen }} as chosen
    inner join steps on steps.funnel = chosen.funnel
    {%- if breakdown %}
    where chosen.breakdown_value is not null
    {%- endif %}
    group by chosen.{{ period }}, chosen.funnel,{{ ' chosen.breakdown_value,' if breakdown }} steps.step, steps.channel, steps.event
),

with_previous as (
    select
        *,
        first_value(users) over funnel_steps as entered,
        lag(users) over funnel_steps as previous_users,
        -- a step no sampled user reached: sampled or not is the question of the period's funnel
        min(min_sample_rate) over (partition by {{ groups }}) as funnel_min_sample_rate
    from per_step
    window funnel_steps as (partition by {{ groups }} order by step)
),

final as (
    select
        {{ period }},
        funnel,
        {%- if breakdown %}
        breakdown_value,
        {%- endif %}
        step,
        channel,
        event,
        users,
        trim_scale(users::numeric / nullif(entered, 0)) as conversion_from_start,
        case
            when step = 1 then 1
            else trim_scale(users::numeric / nullif(previous_users, 0))
        end as conversion_from_previous,
        previous_users - users - immature as drop_off,
        immature,
        median_seconds_to_step,
        p90_seconds_to_step,
        trim_scale(estimated_users) as estimated_users,
        min_sample_rate,
        {{ estimate_reliable('users', 'coalesce(min_sample_rate, funnel_min_sample_rate)') }} as estimate_reliable
    from with_previous
)

select * from final
{%- endmacro %}

{#-
  `funnel_time_to_convert(chosen, period)`: per period, funnel and declared step, the users whose
  chosen attempt reached the step, by bucket of (step time - entry time). Buckets are half-open,
  lower bound included: [0, 1 min), [1, 5 min), [5, 15 min), [15, 60 min), [1, 4 h), [4, 24 h),
  [24 h, ...). Only buckets with users have a row, so a step's buckets sum to its `users` in
  funnel_summary. `chosen` has period, funnel, depth, step_seconds.
-#}
{% macro funnel_time_to_convert(chosen, period) -%}
{%- set buckets = [
    (60, '<1 min'), (300, '1-5 min'), (900, '5-15 min'), (3600, '15-60 min'),
    (14400, '1-4 h'), (86400, '4-24 h'), (none, '>=24 h'),
] -%}
with reached as (
    select
        chosen.{{ period }},
        chosen.funnel,
        steps.step,
        (chosen.step_seconds ->> (steps.step - 1))::numeric as seconds
    from {{ chosen }} as chosen
    inner join {{ ref('funnel_steps') }} as steps
        on steps.funnel = chosen.funnel
        and chosen.depth >= steps.step
),

bucketed as (
    select
        {{ period }},
        funnel,
        step,
        case
            {%- for upper, label in buckets if upper is not none %}
            when seconds < {{ upper }} then {{ loop.index }}
            {%- endfor %}
            else {{ buckets | length }}
        end as bucket_order
    from reached
)

select
    {{ period }},
    funnel,
    step,
    bucket_order,
    case bucket_order
        {%- for upper, label in buckets %}
        when {{ loop.index }} then '{{ label }}'
        {%- endfor %}
    end as bucket,
    count(*) as users
from bucketed
group by {{ period }}, funnel, step, bucket_order
{%- endmacro %}
