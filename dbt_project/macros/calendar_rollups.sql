{#-
  The day log of a quarter or a year (fct_telemetry_quarter, fct_telemetry_year) from the month rows: the model
  is `telemetry_rollup_of_months(grain)`. A run rewrites every quarter (year) that overlaps its window, from all
  of that period's month rows, so the monthly run of May rebuilds Q2 and the year from April, May and what June
  holds (nothing yet). Minutes, user-minutes, days and accounts add up over the months, peaks are the largest
  monthly peak, and unique users and players are distinct over the period's rows of fct_minutes_per_user_monthly
  (a union of the months' users, never a sum of monthly counts).
-#}

{% macro telemetry_rollup_of_months(grain) -%}
{%- set states = user_states() %}
{%- set column = period_column(grain) %}

with months as (
    select
        month_start,
        days_observed,
        minutes_observed,
        accounts_created,
        {%- for state in states %}
        minutes_{{ state }},
        peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_telemetry_month') }}
    where {{ window_filter_date('month_start', grain) }}
),

user_months as (
    select
        month_start,
        user_id,
        state
    from {{ ref('fct_minutes_per_user_monthly') }}
    where {{ window_filter_date('month_start', grain) }}
      and state in ('total', 'player')
),

sums as (
    select
        {{ utc_date(period_start("month_start::timestamp at time zone 'UTC'", grain)) }} as {{ column }},
        count(*) as months_observed,
        sum(days_observed)::bigint as days_observed,
        sum(minutes_observed)::bigint as minutes_observed,
        sum(accounts_created)::bigint as accounts_created,
        {%- for state in states %}
        sum(minutes_{{ state }})::bigint as minutes_{{ state }},
        max(peak_{{ state }}) as peak_{{ state }}{{ "," if not loop.last }}
        {%- endfor %}
    from months
    group by 1
),

uniques as (
    select
        {{ utc_date(period_start("month_start::timestamp at time zone 'UTC'", grain)) }} as {{ column }},
        count(distinct user_id) filter (where state = 'total') as unique_users,
        count(distinct user_id) filter (where state = 'player') as unique_players
    from user_months
    group by 1
),

final as (
    select
        sums.{{ column }},
        sums.months_observed,
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
