"""Scale benchmark: does a daily build cost the same with a month of history as with one day, and what does the
weekly build cost at this scale?

``run(server_url)`` makes two databases and drops them at the end. The first gets the measured day, 2026-11-08,
in ``raw`` through the ``generate_series`` loaders of ``bench_dbt`` and ``bench_funnel`` (imported, not copied):
the minute snapshots of ``bench_dbt``'s measured day (10 servers, 5,000 concurrent users: 14,400 rows), a tenth
of its message samples (about 108 k, ``bench_dbt``'s history days: a month at its full 1.08 M a day would take
most of an hour to load here), a tenth of ``bench_funnel``'s product events (100 k) and the host minutes (5
hosts); then its daily marts. The second database is a copy of the first (``create database ... template``)
that gets the 29 days before the measured one, a month in all:

* in ``raw``, each history day is the measured day's rows again, shifted back by whole days (the message ids
  renamed for their day), which is what the loaders would make for that day, in one insert per table instead
  of the minutes it takes to generate a day of snapshots;
* in the marts, ``fct_minutes_per_user_daily``, which depends on the snapshots of its own day alone, is the
  measured day's rows shifted likewise: exactly what dbt would build from the shifted snapshots, which takes
  it 20 s a day here (14.4 million listed user minutes each); every other daily model's history is built by
  dbt, in one range build of the 29 days, as a catch-up would build it.

So every day of the month holds the same rows, and the marts the daily build of the last day reads (the
presence summary's 7-day look-back, the stored sessions and funnel attempts, the tables it deletes from and
tests) hold a month of them. Figures:

* ``dbt.daily_30d_vs_1d``: the daily build of the last day (both parts, marts then reliability, with their data
  tests, as the daily DAG runs them: same SQL, same selection) in the month's database ÷ the same build in the
  one-day database (target <= 1.2: the cost follows the window, not the history). Three rounds alternate the
  two (1d, 30d, 1d, 30d, ...), so both are measured under the same load; ``dbt.daily_1d_seconds`` and
  ``dbt.daily_30d_seconds`` are the medians of each, and the ratio is theirs. The rounds and the nodes whose
  time grew most with the history are printed (``BENCH_SCALE_KEEP_MONTH=1`` keeps the month's database and
  its compiled SQL to look into them);
* ``dbt.weekly_seconds``: the weekly build (both parts, with tests) of the week that ends with the last day,
  in the month's database, into weekly tables made beforehand by a build of a week without data: the week's
  rows are new to them, as to a scheduled weekly run;
* ``scale.raw_rows_per_day``: the rows one day adds to ``raw`` (all tables); ``scale.load_day_seconds`` the
  time to generate the last day, ``scale.load_history_seconds`` to copy it to the 29 days before.

``python -m tests.bench scale`` runs it: 10 minutes (614 s) on two cores at a load average of 1 to 3.6, the
bench alone on the machine: 100 s copying the history into raw, 90 s building its marts, 195 s for the six
daily builds and 195 s for the weekly one, most of it one data test (167 s: the uniqueness of the week's 100
million listed user minutes in ``stg_game_servers__snapshot_users``). It took 40 minutes at a load
average of 7 to 14 before the month's ``fct_minutes_per_user_daily`` was copied instead of built (10 minutes),
the history's samples, events and host minutes were copied instead of generated day by day and the weekly build
was measured once instead of built three times.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from collectors.dev import local_postgres
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import PARTS, selection
from collectors.orchestration.cadences import CADENCES
from collectors.warehouse.migrate import upgrade
from tests.bench.bench_dbt import (
    HISTORY_MESSAGES_PER_CHANNEL_DAY,
    _load_host_minutes,
    _load_presence,
    _load_samples,
    _load_snapshots,
    _ts,
)
from tests.bench.bench_funnel import BURSTS, EVENTS_PER_BURST, LOAD_SQL

DAY = dt.date(2026, 11, 8)  # a Sunday: the ISO week 2026-11-02 .. 2026-11-08 ends with it
HISTORY_DAYS = 30
ROUNDS = 3
PRODUCT_USERS = 2_000  # x 5 bursts x 10 events: 100 k events a day (bench_funnel's day has 20,000 users)
RAW_TABLES = ("minute_snapshots", "message_samples", "host_minutes", "product_events", "accounts_created")
SHOWN_NODES = 6
# set: the month's database and its dbt target (compiled SQL) outlive the run, to look into a slow build
KEEP_VARIABLE = "BENCH_SCALE_KEEP_MONTH"


def _shifted(column: str) -> str:
    return f"{column} - d * interval '1 day'"


def _copy_back(conn: psycopg.Connection, relation: str, shifted: dict[str, str], where: str, **params: object) -> None:
    """Insert the rows of ``relation`` that ``where`` keeps again for each ``d`` in 1 .. ``params["days"]``: the
    columns of ``shifted`` computed by their expressions of ``d``, every other one copied."""
    columns = [
        name
        for (name,) in conn.execute(
            "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 and not attisdropped"
            " order by attnum",
            (relation,),
        )
    ]
    values = [sql.SQL(shifted[name]) if name in shifted else sql.Identifier(name) for name in columns]
    schema, table = relation.split(".")
    conn.execute(
        sql.SQL(
            "insert into {relation} ({columns}) select {values} from {relation}"
            " cross join generate_series(1, %(days)s) as d where {where}"
        ).format(
            relation=sql.Identifier(schema, table),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(values),
            where=sql.SQL(where),
        ),
        params,
    )


def _load_history(conn: psycopg.Connection) -> None:
    """The 29 days before DAY in raw, each DAY's rows (host minutes: the day before's) shifted back."""
    days = HISTORY_DAYS - 1
    bounds = {"start": _ts(DAY), "end": _ts(DAY + dt.timedelta(days=1))}
    in_day = "{column} >= %(start)s and {column} < %(end)s"
    _copy_back(
        conn,
        "raw.minute_snapshots",
        {"minute": _shifted("minute")},
        in_day.format(column="minute"),
        days=days,
        **bounds,
    )
    # the message ids name their day (bench_dbt's loader: 'm' || day || '-' || channel || '-' || message); the
    # presence samples around DAY (ids 'p...') stay where they are
    _copy_back(
        conn,
        "raw.message_samples",
        {
            "message_id": "'m' || to_char(%(day)s::date - d, 'YYYY-MM-DD') || substr(message_id, 12)",
            "sent_at": _shifted("sent_at"),
            "received_at": _shifted("received_at"),
            "created_at": _shifted("created_at"),
        },
        in_day.format(column="sent_at") + " and left(message_id, 1) = 'm'",
        days=days,
        day=DAY,
        **bounds,
    )
    # bench_funnel's event ids do not name the day (raw's key is the id with the timestamp)
    _copy_back(
        conn,
        "raw.product_events",
        {"timestamp": _shifted('"timestamp"')},
        in_day.format(column='"timestamp"'),
        days=days,
        **bounds,
    )
    # the host minutes of DAY - 1 and DAY are loaded already
    _copy_back(
        conn,
        "raw.host_minutes",
        {"minute": _shifted("minute")},
        in_day.format(column="minute"),
        days=days - 1,
        start=_ts(DAY - dt.timedelta(days=1)),
        end=_ts(DAY),
    )


def _build_cadence(
    cadence: str,
    start: dt.datetime,
    end: dt.datetime,
    url: str,
    target: Path,
    *,
    data_tests: bool = True,
    node_seconds: dict[str, float] | None = None,
) -> float:
    """Both parts of a cadence over ``[start, end)``, as its DAG builds them; their dbt time in seconds. Each
    node's own seconds are added to ``node_seconds``."""
    seconds = 0.0
    for part in PARTS:
        chosen = selection(CADENCES[cadence], part)
        result = dbt.build(
            chosen.select,
            start,
            end,
            database_url=url,
            exclude=chosen.exclude,
            data_tests=data_tests,
            target_path=target,
        )
        seconds += result.elapsed_seconds
        if node_seconds is not None:
            for node in result.nodes:
                node_seconds[node.unique_id] = node_seconds.get(node.unique_id, 0.0) + node.execution_time
    return seconds


def _load_products(conn: psycopg.Connection, day: dt.date) -> None:
    conn.execute(LOAD_SQL, {"users": PRODUCT_USERS, "bursts": BURSTS, "per_burst": EVENTS_PER_BURST, "day": _ts(day)})


def _raw_rows(conn: psycopg.Connection, day: dt.date) -> int:
    """Rows of ``day`` in the raw tables that have them (by each table's time column)."""
    columns = {
        "minute_snapshots": "minute",
        "message_samples": "sent_at",
        "host_minutes": "minute",
        "product_events": '"timestamp"',
    }
    total = 0
    for table, column in columns.items():
        total += conn.execute(
            f"select count(*) from raw.{table} where {column} >= %s and {column} < %s",
            (_ts(day), _ts(day + dt.timedelta(days=1))),
        ).fetchone()[0]
    return total


def _analyze_built(url: str) -> None:
    """Statistics of the tables dbt built, as autovacuum would leave them after the builds (the test servers run
    without it); raw was analyzed after loading."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "select quote_ident(schemaname) || '.' || quote_ident(tablename) from pg_tables"
            " where schemaname not in ('raw', 'public', 'pg_catalog', 'information_schema')"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"analyze {table}")


def _close_sessions(server_url: str, dbname: str) -> None:
    """End what is left of this bench's sessions on ``dbname``: a template database must have none."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (dbname,),
        )


class _Phases:
    """Prints how long each step of the run took: where the bench's own time goes."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        print(f"   [{now - self.started:6.1f} s] {step}", flush=True)
        self.started = now


def _median_node_seconds(runs: list[dict[str, float]]) -> dict[str, float]:
    return {node: statistics.median(run.get(node, 0.0) for run in runs) for node in runs[0]}


def _print_rounds(times: dict[str, list[float]], nodes: dict[str, list[dict[str, float]]]) -> None:
    for index, (one, month) in enumerate(zip(times["1d"], times["30d"], strict=True), start=1):
        print(f"   round {index}: 1d {one:.1f} s, 30d {month:.1f} s", flush=True)
    one, month = _median_node_seconds(nodes["1d"]), _median_node_seconds(nodes["30d"])
    grown = sorted(month, key=lambda node: month[node] - one.get(node, 0.0), reverse=True)[:SHOWN_NODES]
    for node in grown:
        print(f"   {node}: 1d {one.get(node, 0.0):.2f} s, 30d {month[node]:.2f} s (medians)", flush=True)


def run(server_url: str) -> dict[str, float]:
    one_name = f"telemetry_bench_scale_1d_{os.getpid()}"
    month_name = f"telemetry_bench_scale_30d_{os.getpid()}"
    figures: dict[str, float] = {}
    first = DAY - dt.timedelta(days=HISTORY_DAYS - 1)
    day_start, day_end = _ts(DAY), _ts(DAY + dt.timedelta(days=1))
    # dbt's parse cache, one per database: in the shared default target, anyone's build with another database
    # or vars would make each timed build parse the whole project again
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-dbt-"))
    one_target, month_target = scratch / "1d", scratch / "30d"
    phases = _Phases()
    try:
        one_url = local_postgres.create_database(server_url, one_name, drop=True)
        upgrade(one_url)
        with psycopg.connect(one_url, autocommit=True) as conn:
            for table in RAW_TABLES:
                conn.execute(
                    "select raw.ensure_partitions(%s, %s, %s)",
                    (table, first - dt.timedelta(days=1), DAY + dt.timedelta(days=2)),
                )
            conn.execute("select setseed(0.29)")
            started = time.perf_counter()
            _load_snapshots(conn, DAY)
            _load_samples(conn, DAY, HISTORY_MESSAGES_PER_CHANNEL_DAY)
            _load_presence(conn, DAY)
            _load_host_minutes(conn, DAY - dt.timedelta(days=1), DAY)
            _load_products(conn, DAY)
            conn.execute("analyze")
            figures["scale.load_day_seconds"] = time.perf_counter() - started
            figures["scale.raw_rows_per_day"] = float(_raw_rows(conn, DAY))
        phases.done("the last day loaded")
        # deploy views, seeds and tables and warm dbt's parser; the month's database starts from this state
        dbt.build("+tag:daily", day_start, day_end, database_url=one_url, data_tests=False, target_path=one_target)
        phases.done("its daily marts built")

        _close_sessions(server_url, one_name)
        month_url = local_postgres.create_database(server_url, month_name, template=one_name, drop=True)
        phases.done("copied to the month's database")
        with psycopg.connect(month_url, autocommit=True) as conn:
            started = time.perf_counter()
            _load_history(conn)
            conn.execute("analyze raw.minute_snapshots, raw.message_samples, raw.host_minutes, raw.product_events")
            figures["scale.load_history_seconds"] = time.perf_counter() - started
            _copy_back(
                conn,
                "marts.fct_minutes_per_user_daily",
                {"day": "day - d"},
                "day = %(day)s",
                days=HISTORY_DAYS - 1,
                day=DAY,
            )
        phases.done("the history loaded, the minutes per user copied")
        # the other daily marts get their month as a catch-up would build it
        dbt.build(
            "+tag:daily",
            _ts(first),
            day_start,
            database_url=month_url,
            exclude="fct_minutes_per_user_daily",
            data_tests=False,
            target_path=month_target,
        )
        phases.done("the other history marts built")
        _analyze_built(one_url)
        _analyze_built(month_url)
        phases.done("the marts analyzed")

        databases = {"1d": (one_url, one_target), "30d": (month_url, month_target)}
        times: dict[str, list[float]] = {label: [] for label in databases}
        nodes: dict[str, list[dict[str, float]]] = {label: [] for label in databases}
        for _ in range(ROUNDS):
            for label, (url, target) in databases.items():
                node_seconds: dict[str, float] = {}
                times[label].append(_build_cadence("daily", day_start, day_end, url, target, node_seconds=node_seconds))
                nodes[label].append(node_seconds)
        phases.done(f"{ROUNDS} rounds of daily builds")
        _print_rounds(times, nodes)
        figures["dbt.daily_1d_seconds"] = statistics.median(times["1d"])
        figures["dbt.daily_30d_seconds"] = statistics.median(times["30d"])
        figures["dbt.daily_30d_vs_1d"] = figures["dbt.daily_30d_seconds"] / figures["dbt.daily_1d_seconds"]
        local_postgres.drop_database(server_url, one_name)

        week_start = _ts(DAY - dt.timedelta(days=6))
        empty_week = week_start - dt.timedelta(weeks=8)  # before any data and any look-back into it
        _build_cadence(
            "weekly", empty_week, empty_week + dt.timedelta(weeks=1), month_url, month_target, data_tests=False
        )
        phases.done("the weekly tables made")
        figures["dbt.weekly_seconds"] = _build_cadence("weekly", week_start, day_end, month_url, month_target)
        phases.done("the weekly build")
    finally:
        local_postgres.drop_database(server_url, one_name)
        if os.environ.get(KEEP_VARIABLE):
            print(f"   kept for EXPLAIN: database {month_name}, dbt target {month_target}", flush=True)
        else:
            local_postgres.drop_database(server_url, month_name)
            shutil.rmtree(scratch, ignore_errors=True)
    return figures


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_scale", description=__doc__)
    parser.add_argument("server_url", nargs="?", default=local_postgres.LOCAL_SERVER_URL)
    print(json.dumps(run(parser.parse_args().server_url), indent=2))
