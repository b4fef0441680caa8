"""dbt benchmarks: daily build vs one hand-written query, hourly cost vs
history, and the accuracy of quantiles from merged histograms.

``run(server_url)`` creates and drops its own database, fills ``raw`` with ``generate_series``
(no simulator needed) and returns figures (``python -m tests.bench.bench_dbt [URL] --only hourly``
measures only the hourly figures, ``--only daily`` only the daily ones):

* ``dbt.daily_vs_handsql``: the daily models that make the day log, minutes per user and
  reliability (one ``dbt build`` with data tests) ÷ one hand-written query computing the same day
  log and daily reliability, same day, same run; ``dbt.daily_reliability_model_seconds`` is the
  daily reliability model's own time in that build;
* ``dbt.daily_vs_duckdb``: that same build ÷ DuckDB computing the same rows (channel reliability,
  minutes per user, the day log's segments and figures) from the same raw rows, exported to it
  beforehand (``tests.bench.dbt_duckdb``; only its compute is timed, median of 3), the marts
  checked equal to DuckDB's rows, row for row; ``dbt.reliability_daily_vs_duckdb``: the daily
  reliability's models in that build (the presence summary and the channel mart) ÷ DuckDB's
  reliability query;
* ``dbt.hourly_14d_vs_1d``: one hourly ``dbt build --select tag:hourly`` with 14 days of raw
  history ÷ the same run with 1 day (cost must grow with the window, not the history, although
  reliability looks back 7 days);
* ``percentiles.max_relative_error``: worst relative error of p50/p95/p99 of player ping from the
  hourly, daily and weekly host marts against the exact quantiles (same rank rule) of the values
  the histograms were built from.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg

from collectors.dev import local_postgres
from collectors.warehouse.migrate import upgrade
from tests.bench import dbt_duckdb

try:
    from collectors.orchestration import dbt_runner as dbt
except ImportError:  # run as `python -m tests.bench`: plugins/ is not on sys.path (pytest adds it)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from collectors.orchestration import dbt_runner as dbt

UTC = dt.UTC
DAY = dt.date(2026, 11, 8)  # a Sunday: the ISO week 2026-11-02 .. 2026-11-08 lies inside the data
HISTORY_DAYS = 14
SERVERS = 10
USERS_PER_SERVER = 500  # 5,000 concurrent users
CHANNELS = 20
RECEIVERS_PER_CHANNEL = 50
MESSAGES_PER_CHANNEL_DAY = 1_100  # 20 * 1,100 * 50 * 0.98 = about 1.08 M samples on DAY
HISTORY_MESSAGES_PER_CHANNEL_DAY = 110  # lighter history days: about 108 k samples each
HOSTS = 5
PING_VALUES_PER_MINUTE = 20
GAMMA_SQL = "((1 + 0.005) / (1 - 0.005))::double precision"


def _ts(day: dt.date, hours: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC) + dt.timedelta(hours=hours)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _load_snapshots(conn: psycopg.Connection, day: dt.date) -> None:
    """SERVERS x 1440 minutes; each server lists USERS_PER_SERVER users, drifting every 10 minutes."""
    conn.execute(
        """
        insert into raw.minute_snapshots (server_id, minute, player, spectator, lobby, menu, total,
            battles_total, battles_lobby, battles_in_progress, battle_ids)
        select
            's' || s,
            %(day)s::timestamptz + m * interval '1 minute',
            array(select generate_series(b, b + 249)),
            array(select generate_series(b + 250, b + 299)),
            array(select generate_series(b + 300, b + 374)),
            array(select generate_series(b + 375, b + %(last)s)),
            array(select generate_series(b, b + %(last)s)),
            25, 5, 20,
            array(select 's' || s || '-b' || (m / 30) || '-' || k from generate_series(1, 25) as k)
        from generate_series(0, %(servers)s - 1) as s
        cross join generate_series(0, 1439) as m
        cross join lateral (select s * 100000 + (m / 10) * 7 as b) as base
        """,
        {"day": _ts(day), "servers": SERVERS, "last": USERS_PER_SERVER - 1},
    )


def _load_samples(conn: psycopg.Connection, day: dt.date, messages_per_channel: int) -> None:
    """Each channel's messages, received by its receivers with a 2 % loss; plus presence samples
    in the last hour of the day before and the first hour of the day after."""
    conn.execute("select setseed(0.42)")
    conn.execute(
        """
        insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at,
            received_at, created_at)
        select
            'm' || %(tag)s || '-' || c || '-' || m,
            'c' || c,
            'r' || c || '-' || r,
            sent,
            sent + interval '1 second',
            sent + interval '3 seconds'
        from generate_series(1, %(channels)s) as c
        cross join generate_series(1, %(messages)s) as m
        cross join lateral (
            select %(day)s::timestamptz + (m * 86399.0 / (%(messages)s + 1)) * interval '1 second' as sent
        ) as t
        cross join generate_series(1, %(receivers)s) as r
        where random() >= 0.02
        """,
        {
            "day": _ts(day),
            "tag": day.isoformat(),
            "channels": CHANNELS,
            "messages": messages_per_channel,
            "receivers": RECEIVERS_PER_CHANNEL,
        },
    )


def _load_presence(conn: psycopg.Connection, day: dt.date) -> None:
    """One sample per receiver in the hour before `day` and the hour after it."""
    conn.execute(
        """
        insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at,
            received_at, created_at)
        select 'p' || edge || '-' || c || '-' || r, 'c' || c, 'r' || c || '-' || r, sent,
               sent + interval '1 second', sent + interval '3 seconds'
        from generate_series(1, %(channels)s) as c
        cross join generate_series(1, %(receivers)s) as r
        cross join (values ('before', %(before)s::timestamptz), ('after', %(after)s::timestamptz))
            as edges (edge, sent)
        on conflict do nothing
        """,
        {
            "channels": CHANNELS,
            "receivers": RECEIVERS_PER_CHANNEL,
            "before": _ts(day) - dt.timedelta(minutes=30),
            "after": _ts(day + dt.timedelta(days=1)) + dt.timedelta(minutes=30),
        },
    )


def _load_host_minutes(conn: psycopg.Connection, first: dt.date, last: dt.date) -> None:
    """HOSTS x minutes with ping histograms built from exact values kept in bench_ping_values."""
    conn.execute(
        """
        create table if not exists public.bench_ping_values (
            host_id text, minute timestamptz, value double precision
        )
        """
    )
    params = {"first": _ts(first), "end": _ts(last + dt.timedelta(days=1)), "hosts": HOSTS}
    conn.execute(
        """
        insert into public.bench_ping_values
        select 'h' || h, minute, round((exp(3.4 + 0.6 * sin(h * 7 + k * 1.3 + extract(epoch from minute) / 600)
                    + 0.5 * cos(k * 2.1 + h)))::numeric, 3)::double precision
        from generate_series(1, %(hosts)s) as h
        cross join generate_series(%(first)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                                   interval '1 minute') as minute
        cross join generate_series(1, """
        + str(PING_VALUES_PER_MINUTE)
        + """) as k
        """,
        params,
    )
    conn.execute(
        f"""
        insert into raw.host_minutes (host_id, minute, samples, cpu_percent, cpu_percent_max,
            load_average_1m, load_average_5m, load_average_15m, memory_total_bytes, memory_used_bytes,
            memory_free_bytes, memory_percent, memory_percent_max, disk_read_bytes_per_s,
            disk_write_bytes_per_s, disk_read_ops_per_s, disk_write_ops_per_s, net_recv_bytes_per_s,
            net_sent_bytes_per_s, net_recv_packets_per_s, net_sent_packets_per_s, player_ping_ms,
            tick_rate, players, packet_loss_percent)
        with buckets as (
            select host_id, minute, ceil(ln(value) / ln({GAMMA_SQL}))::integer as bucket, count(*) as n,
                   sum(value) as total, min(value) as low, max(value) as high
            from public.bench_ping_values
            where minute >= %(first)s and minute < %(end)s
            group by 1, 2, 3
        ),
        histograms as (
            select host_id, minute,
                   jsonb_build_object('i', jsonb_agg(bucket order by bucket), 'c', jsonb_agg(n order by bucket),
                                      'z', 0, 'sum', sum(total), 'min', min(low), 'max', max(high)) as doc
            from buckets group by 1, 2
        )
        select host_id, minute, 60, 40 + 50 * abs(sin(extract(epoch from minute) / 3000)), 99, 1, 1, 1,
               1000, 500, 500, 50 + 40 * abs(cos(extract(epoch from minute) / 5000)), 90, 0, 0, 0, 0, 0, 0, 0, 0,
               doc, 57 + 3 * sin(extract(epoch from minute) / 700), 100, 0.5
        from histograms
        """,
        params,
    )


HAND_SQL = """
with snapshots as (
    select * from raw.minute_snapshots where minute >= %(start)s and minute < %(end)s
),
global_minutes as (
    select minute,
           sum(battles_total) as bt, sum(battles_lobby) as bl, sum(battles_in_progress) as bp,
           sum(cardinality(player)) as player, sum(cardinality(spectator)) as spectator,
           sum(cardinality(lobby)) as lobby, sum(cardinality(menu)) as menu, sum(cardinality(total)) as total
    from snapshots group by minute
),
segment_stats as (
    select floor(extract(epoch from minute - %(start)s) / 3600)::integer as i, count(*) as n,
           sum(bt) as bt, sum(bl) as bl, sum(bp) as bp,
           sum(player) as player, sum(spectator) as spectator, sum(lobby) as lobby, sum(menu) as menu,
           sum(total) as total,
           max(player) as player_peak, max(spectator) as spectator_peak, max(lobby) as lobby_peak,
           max(menu) as menu_peak, max(total) as total_peak
    from global_minutes group by 1
),
segments as (
    select i, coalesce(n, 0) as n,
           case when n > 0 then trim_scale(bt::numeric / n) else 0 end as bt,
           case when n > 0 then trim_scale(bl::numeric / n) else 0 end as bl,
           case when n > 0 then trim_scale(bp::numeric / n) else 0 end as bp,
           coalesce(player, 0) as player, coalesce(spectator, 0) as spectator, coalesce(lobby, 0) as lobby,
           coalesce(menu, 0) as menu, coalesce(total, 0) as total,
           case when n > 0 then trim_scale(player::numeric / n) else 0 end as player_avg,
           case when n > 0 then trim_scale(spectator::numeric / n) else 0 end as spectator_avg,
           case when n > 0 then trim_scale(lobby::numeric / n) else 0 end as lobby_avg,
           case when n > 0 then trim_scale(menu::numeric / n) else 0 end as menu_avg,
           case when n > 0 then trim_scale(total::numeric / n) else 0 end as total_avg,
           coalesce(player_peak, 0) as player_peak, coalesce(spectator_peak, 0) as spectator_peak,
           coalesce(lobby_peak, 0) as lobby_peak, coalesce(menu_peak, 0) as menu_peak,
           coalesce(total_peak, 0) as total_peak
    from generate_series(0, 23) as i left join segment_stats using (i)
),
user_minutes as (
    select lists.state, listed.user_id, count(distinct snapshots.minute) as minutes
    from snapshots
    cross join lateral (values ('player', player), ('spectator', spectator), ('lobby', lobby),
                               ('menu', menu), ('total', total)) as lists (state, ids)
    cross join lateral unnest(lists.ids) as listed (user_id)
    group by 1, 2
),
user_maps as (
    select state, jsonb_object_agg(user_id::text, minutes) as users, count(*) as n
    from user_minutes group by state
),
battles as (
    select count(distinct b) as n from snapshots cross join lateral unnest(battle_ids) as b
),
accounts as (
    select count(distinct user_id) as n from raw.accounts_created
    where created_at >= %(start)s and created_at < %(end)s
),
day_log as (
    select jsonb_build_object(
        'battles', jsonb_build_object('total', jsonb_agg(bt order by i), 'lobby', jsonb_agg(bl order by i),
                                      'in_progress', jsonb_agg(bp order by i)),
        'aggregates', jsonb_build_object(
            'stats', jsonb_build_object(
                'accounts_created', (select n from accounts),
                'unique_users', (select n from user_maps where state = 'total'),
                'unique_players', (select n from user_maps where state = 'player'),
                'peak_user_counts', jsonb_build_object('player', max(player_peak), 'spectator', max(spectator_peak),
                                                       'lobby', max(lobby_peak), 'menu', max(menu_peak),
                                                       'total', max(total_peak)),
                'battles', (select n from battles)),
            'minutes', jsonb_build_object('player', sum(player), 'spectator', sum(spectator),
                                          'lobby', sum(lobby), 'menu', sum(menu), 'total', sum(total))),
        'user_counts', jsonb_build_object('player', jsonb_agg(player order by i),
                                          'spectator', jsonb_agg(spectator order by i),
                                          'lobby', jsonb_agg(lobby order by i), 'menu', jsonb_agg(menu order by i),
                                          'total', jsonb_agg(total order by i)),
        'average_user_counts', jsonb_build_object('player', jsonb_agg(player_avg order by i),
                                                  'spectator', jsonb_agg(spectator_avg order by i),
                                                  'lobby', jsonb_agg(lobby_avg order by i),
                                                  'menu', jsonb_agg(menu_avg order by i),
                                                  'total', jsonb_agg(total_avg order by i)),
        'minutes_per_user', (select jsonb_object_agg(state, users) from user_maps)
    ) as doc,
    jsonb_build_object('player', jsonb_agg(player_peak order by i), 'spectator', jsonb_agg(spectator_peak order by i),
                       'lobby', jsonb_agg(lobby_peak order by i), 'menu', jsonb_agg(menu_peak order by i),
                       'total', jsonb_agg(total_peak order by i)) as segment_peaks
    from segments
),
samples as (
    select channel_id, message_id, receiver_public_key, sent_at, coalesce(received_at, created_at) as recorded_at
    from raw.message_samples
    where sent_at >= %(start)s - interval '7 days' and sent_at < %(end)s + interval '24 hours'
),
counted as (
    select channel_id, receiver_public_key from samples group by 1, 2
    having min(recorded_at) < %(start)s and max(recorded_at) >= %(end)s
),
deliveries as (
    select distinct samples.channel_id, samples.message_id, samples.receiver_public_key
    from samples join counted using (channel_id, receiver_public_key)
    where sent_at >= %(start)s and sent_at < %(end)s
),
channels as (
    select d.channel_id, count(distinct d.message_id) * max(r.n) as total,
           count(distinct d.message_id) * max(r.n) - count(*) as missing
    from deliveries as d
    join (select channel_id, count(*) as n from counted group by 1) as r using (channel_id)
    group by d.channel_id
)
select
    (select doc from day_log) as day_log,
    (select segment_peaks from day_log) as segment_peaks,
    (select trim_scale(avg(1 - missing::numeric / total)) from channels where total > 0) as reliability
"""

# the daily reliability part of the DAG refreshes the presence summary too
DAILY_SELECT = (
    "fct_minutes_per_user_daily fct_telemetry_day int_message_presence_hourly fct_channel_reliability_daily"
    " fct_reliability_daily"
)


def run(server_url: str, only: str | None = None) -> dict[str, float]:
    """Every figure, or with ``only="hourly"`` / ``"daily"`` just those (the loads they need included)."""
    if only not in (None, "hourly", "daily"):
        raise ValueError(f"only must be None, 'hourly' or 'daily', not {only!r}")
    name = f"telemetry_bench_dbt_{os.getpid()}"
    url = local_postgres.create_database(server_url, name, drop=True)
    figures: dict[str, float] = {}
    try:
        upgrade(url)
        first_history = DAY - dt.timedelta(days=HISTORY_DAYS - 1)
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("minute_snapshots", "message_samples", "host_minutes", "product_events", "accounts_created"):
                conn.execute(
                    "select raw.ensure_partitions(%s, %s, %s)",
                    (table, first_history - dt.timedelta(days=1), DAY + dt.timedelta(days=2)),
                )
            load_started = time.perf_counter()
            _load_snapshots(conn, DAY)
            _load_samples(conn, DAY, MESSAGES_PER_CHANNEL_DAY)
            _load_presence(conn, DAY)
            _load_host_minutes(conn, DAY - dt.timedelta(days=1), DAY)
            conn.execute("analyze")
            figures["dbt.load_one_day_seconds"] = time.perf_counter() - load_started
            figures["dbt.message_samples_on_day"] = float(
                conn.execute(
                    "select count(*) from raw.message_samples where sent_at >= %s and sent_at < %s",
                    (_ts(DAY), _ts(DAY + dt.timedelta(days=1))),
                ).fetchone()[0]
            )

        day_start, day_end = _ts(DAY), _ts(DAY + dt.timedelta(days=1))
        # deploy the views and warm the parser with the measured vars (partial parsing is per vars)
        dbt.build("+tag:daily +tag:hourly", day_start, day_end, database_url=url, data_tests=False)

        if only != "hourly":
            figures.update(_daily_figures(url, day_start, day_end))
        if only == "daily":
            return figures

        hour_start = day_start + dt.timedelta(hours=12)

        def hourly_seconds() -> float:
            runs = [
                dbt.build(
                    "tag:hourly", hour_start, hour_start + dt.timedelta(hours=1), database_url=url
                ).elapsed_seconds
                for _ in range(3)
            ]
            return statistics.median(runs)

        figures["dbt.hourly_1d_seconds"] = hourly_seconds()
        with psycopg.connect(url, autocommit=True) as conn:
            history_started = time.perf_counter()
            for offset in range(1, HISTORY_DAYS):
                _load_samples(conn, DAY - dt.timedelta(days=offset), HISTORY_MESSAGES_PER_CHANNEL_DAY)
            _load_host_minutes(conn, first_history, DAY - dt.timedelta(days=2))
            conn.execute("analyze")
            figures["dbt.load_history_seconds"] = time.perf_counter() - history_started
        # the hourly marts get their history too, as a scheduled backfill would have left them
        dbt.build("tag:hourly", _ts(first_history), day_end, database_url=url, data_tests=False)
        figures["dbt.hourly_14d_seconds"] = hourly_seconds()
        figures["dbt.hourly_14d_vs_1d"] = figures["dbt.hourly_14d_seconds"] / figures["dbt.hourly_1d_seconds"]

        if only is None:
            week_start = _ts(DAY - dt.timedelta(days=6))
            dbt.build("fct_host_metrics_daily fct_host_metrics_weekly", week_start, day_end, database_url=url)
            figures["percentiles.max_relative_error"] = _max_quantile_error(url, week_start, day_end)
    finally:
        local_postgres.drop_database(server_url, name)
    return figures


def _daily_figures(url: str, day_start: dt.datetime, day_end: dt.datetime) -> dict[str, float]:
    figures: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        hand: list[object] = []
        figures["dbt.handsql_seconds"] = _timed(
            lambda: hand.append(conn.execute(HAND_SQL, {"start": day_start, "end": day_end}).fetchone())
        )
    models_only = dbt.build(DAILY_SELECT, day_start, day_end, database_url=url, data_tests=False)
    figures["dbt.daily_models_only_seconds"] = models_only.elapsed_seconds
    result = dbt.build(DAILY_SELECT, day_start, day_end, database_url=url)
    figures["dbt.daily_seconds"] = result.elapsed_seconds
    figures["dbt.daily_reliability_model_seconds"] = next(
        node.execution_time for node in result.nodes if node.unique_id.endswith(".fct_channel_reliability_daily")
    )
    figures["dbt.daily_vs_handsql"] = figures["dbt.daily_seconds"] / figures["dbt.handsql_seconds"]
    figures["dbt.daily_models_only_vs_handsql"] = (
        figures["dbt.daily_models_only_seconds"] / figures["dbt.handsql_seconds"]
    )
    with psycopg.connect(url, autocommit=True) as conn:
        mart = conn.execute(
            "select d.day_log, d.segment_peak_user_counts, r.reliability from marts.fct_telemetry_day as d "
            "join marts.fct_reliability_daily as r using (day) where d.day = %s",
            (DAY,),
        ).fetchone()
    hand_log, hand_peaks, hand_reliability = hand[0]  # type: ignore[misc]
    if (
        mart is None
        or mart[0] != hand_log
        or mart[1] != hand_peaks
        or abs(mart[2] - hand_reliability) > Decimal("1e-15")
    ):
        raise AssertionError("dbt marts and the hand-written query disagree on the day log or reliability")
    figures["dbt.daily_reliability"] = float(mart[2])
    figures.update(_duckdb_figures(url, result, day_start))
    return figures


def _duckdb_figures(url: str, result: dbt.DbtBuildResult, day_start: dt.datetime) -> dict[str, float]:
    """DuckDB's time for the same rows, and the ratios; raises unless the marts equal its rows."""
    duck = dbt_duckdb.export(url, day_start)
    runs = [dbt_duckdb.compute(duck, day_start) for _ in range(3)]
    duck.close()
    dbt_duckdb.compare(url, DAY, day_start, runs[0])
    seconds = {node.unique_id.rsplit(".", 1)[-1]: node.execution_time for node in result.nodes}
    reliability = seconds["int_message_presence_hourly"] + seconds["fct_channel_reliability_daily"]
    duckdb_daily = statistics.median(run.daily_seconds for run in runs)
    duckdb_reliability = statistics.median(run.reliability_seconds for run in runs)
    return {
        "dbt.duckdb_daily_seconds": duckdb_daily,
        "dbt.duckdb_reliability_daily_seconds": duckdb_reliability,
        "dbt.daily_vs_duckdb": result.elapsed_seconds / duckdb_daily,
        "dbt.reliability_daily_vs_duckdb": reliability / duckdb_reliability,
    }


def _max_quantile_error(url: str, start: dt.datetime, end: dt.datetime) -> float:
    """Worst |estimate - exact| / exact of p50/p95/p99 of player ping over hours, days and the week.

    percentile_disc(q) is the value of rank ceil(q * n), the rank rule of the marts.
    """
    grains = (
        ("fct_host_metrics_hourly", "hour_start", "date_trunc('hour', v.minute, 'UTC')"),
        ("fct_host_metrics_daily", "day", "(v.minute at time zone 'UTC')::date"),
        ("fct_host_metrics_weekly", "week_start", "date_trunc('week', v.minute, 'UTC')::date"),
    )
    worst = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        for table, column, period in grains:
            row = conn.execute(
                f"""
                with exact as (
                    select v.host_id, {period} as period,
                           percentile_disc(array[0.5, 0.95, 0.99]) within group (order by v.value) as q
                    from public.bench_ping_values as v
                    where v.minute >= %(start)s and v.minute < %(end)s
                    group by 1, 2
                )
                select max(greatest(abs(m.player_ping_ms_p50 - e.q[1]) / e.q[1],
                                    abs(m.player_ping_ms_p95 - e.q[2]) / e.q[2],
                                    abs(m.player_ping_ms_p99 - e.q[3]) / e.q[3])),
                       count(*)
                from exact as e
                join marts.{table} as m on m.host_id = e.host_id and m.{column} = e.period
                """,
                {"start": start, "end": end},
            ).fetchone()
            if row is None or not row[1]:
                raise AssertionError(f"no {table} rows to compare")
            worst = max(worst, float(row[0]))
    return worst


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_dbt", description=__doc__)
    parser.add_argument("server_url", nargs="?", default=local_postgres.LOCAL_SERVER_URL)
    parser.add_argument("--only", choices=["hourly", "daily"], help="measure only these figures")
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.server_url, arguments.only), indent=2))
