"""Every SQL statement of the dashboards (``collectors.orchestration.dashboards``), in one place.

Each statement reads the marts only (schema ``marts``, built by dbt), is parameterised (psycopg named
parameters, never formatted into the text) and bounded by the period the page asks for: ``%(start)s``
(inclusive) and ``%(end)s`` (exclusive) are dates for the daily and weekly marts, UTC timestamps
for the hourly ones. An optional filter is ``%(channel)s`` / ``%(host)s`` / ``%(funnel)s``, null for
"all". The dashboards only draw these rows; the numbers are the marts' (a sum over the rows of one
day is the one aggregation done here, where the mart's grain is finer than the chart's).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Query:
    name: str
    mart: str  # the mart (or marts) the rows come from, shown under the chart
    sql: str


def _query(name: str, mart: str, sql: str) -> Query:
    return Query(name, mart, sql.strip())


# --------------------------------------------------------------------------- the day log

DAY_LOG_SEGMENTS = _query(
    "day_log_segments",
    "fct_telemetry_day",
    """
select d.day,
       s.segment,
       d.day + make_interval(mins => (s.segment - 1) * d.segment_minutes) as segment_start,
       d.segment_minutes,
       (d.day_log #> '{average_user_counts,player}' ->> (s.segment - 1))::numeric as player,
       (d.day_log #> '{average_user_counts,spectator}' ->> (s.segment - 1))::numeric as spectator,
       (d.day_log #> '{average_user_counts,lobby}' ->> (s.segment - 1))::numeric as lobby,
       (d.day_log #> '{average_user_counts,menu}' ->> (s.segment - 1))::numeric as menu,
       (d.day_log #> '{average_user_counts,total}' ->> (s.segment - 1))::numeric as total,
       (d.day_log #> '{battles,in_progress}' ->> (s.segment - 1))::numeric as battles_in_progress,
       (d.day_log #> '{battles,lobby}' ->> (s.segment - 1))::numeric as battles_lobby,
       (d.day_log #> '{battles,total}' ->> (s.segment - 1))::numeric as battles_total
from marts.fct_telemetry_day as d
cross join lateral generate_series(1, d.segment_count) as s(segment)
where d.day = %(day)s
order by s.segment
""",
)

DAY_LOG_DAYS = _query(
    "day_log_days",
    "fct_telemetry_day",
    """
select day, unique_users, unique_players, accounts_created, battles, peak_total, minutes_total, minutes_observed
from marts.fct_telemetry_day
where day >= %(start)s and day < %(end)s
order by day
""",
)

# the day log's day when the page names none: the period's last day before today (UTC), which is not over yet
DAY_LOG_LAST_DAY = """
select coalesce(max(day) filter (where day < (now() at time zone 'UTC')::date), max(day))
from marts.fct_telemetry_day
where day >= %(start)s and day < %(end)s
"""

# --------------------------------------------------------------------------- user-minutes

USER_MINUTES = _query(
    "user_minutes",
    "fct_minutes_per_user_daily",
    """
select day, state, sum(minutes)::bigint as user_minutes, count(*)::bigint as users
from marts.fct_minutes_per_user_daily
where day >= %(start)s and day < %(end)s
group by day, state
order by day, state
""",
)

# --------------------------------------------------------------------------- reliability

WORST_CHANNELS = _query(
    "worst_channels",
    "fct_channel_reliability_daily",
    """
select channel_id,
       count(reliability)::bigint as days_measured,
       min(reliability) as worst_day_reliability,
       avg(reliability) as mean_daily_reliability,
       sum(total)::bigint as total,
       sum(missing)::bigint as missing
from marts.fct_channel_reliability_daily
where day >= %(start)s and day < %(end)s
  and (%(channel)s::text is null or channel_id = %(channel)s::text)
group by channel_id
having count(reliability) > 0
order by min(reliability), avg(reliability), channel_id
limit %(limit)s
""",
)

CHANNEL_DAYS = _query(
    "channel_days",
    "fct_channel_reliability_daily",
    """
select day, channel_id, reliability, status_compat_reliability, messages, total, missing
from marts.fct_channel_reliability_daily
where day >= %(start)s and day < %(end)s
  and (%(channel)s::text is null or channel_id = %(channel)s::text)
order by channel_id, day
""",
)

OVERALL_RELIABILITY = _query(
    "overall_reliability",
    "fct_reliability_daily",
    """
select day, reliability, status_compat_reliability, channels, channels_measured, total, missing
from marts.fct_reliability_daily
where day >= %(start)s and day < %(end)s
order by day
""",
)

# --------------------------------------------------------------------------- hosts and game servers

HOST_METRICS = _query(
    "host_metrics",
    "fct_host_metrics_hourly",
    """
select hour_start, host_id, cpu_percent_avg, memory_percent_avg, tick_rate_avg, tick_duration_ms_p95,
       player_ping_ms_p95, minutes_observed
from marts.fct_host_metrics_hourly
where hour_start >= %(start_ts)s and hour_start < %(end_ts)s
  and (%(host)s::text is null or host_id = %(host)s::text)
order by host_id, hour_start
""",
)

SERVER_METRICS = _query(
    "server_metrics",
    "fct_server_metrics_hourly",
    """
select hour_start, server_id, cpu_usage_percent_avg, memory_usage_percent_avg, tick_rate_fps_avg,
       tick_rate_fps_min, tick_duration_p95_max, ping_p95_max, reports
from marts.fct_server_metrics_hourly
where hour_start >= %(start_ts)s and hour_start < %(end_ts)s
  and (%(host)s::text is null or server_id = %(host)s::text)
order by server_id, hour_start
""",
)

# --------------------------------------------------------------------------- funnels

FUNNEL_DAILY = _query(
    "funnel_steps",
    "fct_funnel_daily",
    """
select day as entry_period, funnel, step, channel, event, users, conversion_from_start, conversion_from_previous,
       drop_off, immature
from marts.fct_funnel_daily
where day >= %(start)s and day < %(end)s and funnel = %(funnel)s
order by day, step
""",
)

FUNNEL_WEEKLY = _query(
    "funnel_steps",
    "fct_funnel_weekly",
    """
select week_start as entry_period, funnel, step, channel, event, users, conversion_from_start,
       conversion_from_previous, drop_off, immature
from marts.fct_funnel_weekly
where week_start >= %(start)s and week_start < %(end)s and funnel = %(funnel)s
order by week_start, step
""",
)

# --------------------------------------------------------------------------- retention

RETENTION_COHORTS = _query(
    "retention_cohorts",
    "fct_retention_weekly",
    """
select cohort_week, week_offset, activity_week, cohort_size, is_mature, users_exact, retention_exact,
       users_on_or_after, retention_on_or_after
from marts.fct_retention_weekly
where cohort_week >= %(start)s and cohort_week < %(end)s
order by cohort_week, week_offset
""",
)

# the average over every cohort (the mart has no period: it is one row per week offset)
RETENTION_AVERAGE = _query(
    "retention_average",
    "fct_retention_weekly_average",
    """
select week_offset, cohorts, cohort_users, retention_exact, retention_on_or_after
from marts.fct_retention_weekly_average
order by week_offset
""",
)

# --------------------------------------------------------------------------- product events

FEATURE_ADOPTION = _query(
    "feature_adoption",
    "fct_feature_adoption_weekly",
    """
select week_start, channel, event, adopters, active_users, adoption_share, share_change, z_score, trend
from marts.fct_feature_adoption_weekly
where week_start >= %(start)s and week_start < %(end)s
  and (%(channel)s::text is null or channel = %(channel)s::text)
order by channel, event, week_start
""",
)

EVENT_COUNTS = _query(
    "event_counts",
    "fct_event_counts_daily",
    """
select day, channel, event, events, users, estimated_events, estimate_reliable
from marts.fct_event_counts_daily
where day >= %(start)s and day < %(end)s
  and (%(channel)s::text is null or channel = %(channel)s::text)
order by day, channel, event
""",
)

# --------------------------------------------------------------------------- the filters' choices

CHOICES = {
    "channel": """
select channel_id from marts.fct_channel_reliability_daily where day >= %(start)s and day < %(end)s
union
select channel from marts.fct_event_counts_daily where day >= %(start)s and day < %(end)s
order by 1
""",
    "host": """
select host_id from marts.fct_host_metrics_hourly where hour_start >= %(start_ts)s and hour_start < %(end_ts)s
union
select server_id from marts.fct_server_metrics_hourly where hour_start >= %(start_ts)s and hour_start < %(end_ts)s
order by 1
""",
    "funnel": "select distinct funnel from marts.fct_funnel_daily where day >= %(start)s and day < %(end)s order by 1",
}


def fetch(
    conn: psycopg.Connection, query: Query, params: dict[str, object]
) -> tuple[list[str], list[tuple[object, ...]]]:
    """The query's column names and rows."""
    cursor = conn.execute(query.sql, params)  # type: ignore[arg-type]  (the text is this module's constant)
    columns = [column.name for column in cursor.description or ()]
    return columns, cursor.fetchall()


def choices(conn: psycopg.Connection, kind: str, params: dict[str, object]) -> list[str]:
    """The values a filter can take in the period (channels, hosts, funnels)."""
    return [row[0] for row in conn.execute(CHOICES[kind], params).fetchall()]  # type: ignore[arg-type]
