{#-
  The day log of a month, quarter or year (fct_telemetry_month, _quarter, _year): the model is
  `telemetry_rollup(grain, of)`, the rows of `grain` from the rows of the finer grain `of` ('day': the daily marts;
  'month': the month rows). A run rewrites every period that overlaps its window, from all of that period's rows,
  so the monthly run of May rebuilds May from its days, and Q2 and the year from April, May and what June holds
  (nothing yet). Minutes, user-minutes, days and accounts add up, peaks are the largest peak of the finer rows, and
  unique users and players are distinct over the period's rows of the finer per-user table
  (fct_minutes_per_user_daily or _monthly): a union of the users, never a sum of counts. Each row says how many
  finer rows it was built from (`days_observed`, and for a quarter or year `months_observed` too).
-#}

{% macro telemetry_rollup(grain, of) -%}
{%- set states = user_states() %}
{%- set column = period_column(grain) %}
{%- set finer = period_column(of) %}
{%- set sources = {
    'day': ('fct_telemetry_day', 'fct_minutes_per_user_daily'),
    'month': ('fct_telemetry_month', 'fct_minutes_per_user_monthly'),
}[of] %}
{%- set period = utc_date(period_start(finer ~ "::timestamp at time zone 'UTC'", grain)) %}

with finer_rows as (
    select
        {{ finer }},
        {%- if of != 'day' %}
        days_observed,
        {%- endif %}
        minutes_observed,
        accounts_created,
        {%- for state in states %}
        minutes_{{ state }},
        peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref(sources[0]) }}
    where {{ window_filter_date(finer, grain) }}
),

finer_users as (
    select
        {{ finer }},
        user_id,
        state
    from {{ ref(sources[1]) }}
    where {{ window_filter_date(finer, grain) }}
      and state in ('total', 'player')
),

-- minutes add up; peaks are the largest finer peak
sums as (
    select
        {{ period }} as {{ column }},
        {%- if of == 'day' %}
        count(*) as days_observed,
        {%- else %}
        count(*) as {{ of }}s_observed,
        sum(days_observed)::bigint as days_observed,
        {%- endif %}
        sum(minutes_observed)::bigint as minutes_observed,
        sum(accounts_created)::bigint as accounts_created,
        {%- for state in states %}
        sum(minutes_{{ state }})::bigint as minutes_{{ state }},
        max(peak_{{ state }}) as peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from finer_rows
    group by 1
),

-- unique users and players are distinct over the whole period, never a sum of finer counts
uniques as (
    select
        {{ period }} as {{ column }},
        count(distinct user_id) filter (where state = 'total') as unique_users,
        count(distinct user_id) filter (where state = 'player') as unique_players
    from finer_users
    group by 1
),

final as (
    select
        sums.{{ column }},
        {%- if of != 'day' %}
        sums.{{ of }}s_observed,
        {%- endif %}
        sums.days_observed,
        sums.minutes_observed,
        coalesce(uniques.unique_users, 0) as unique_users,
        coalesce(uniques.unique_players, 0) as unique_players,
        sums.accounts_created,
        {%- for state in states %}
        sums.minutes_{{ state }},
        {%- endfor %}
        {%- for state in states %}
        sums.peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from sums
    left join uniques on uniques.{{ column }} = sums.{{ column }}
)

select * from final
{%- endmacro %}
