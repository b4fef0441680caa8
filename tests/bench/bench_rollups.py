"""Month rollups: what one monthly build costs next to one daily build, and whether it grows with history.

``run(server_url)`` creates and drops its own database and fills ``raw`` for two whole months (September and
October 2026) with ``generate_series``: game-server snapshots (SERVERS servers of USERS_PER_SERVER users, a
tenth of the daily bench's users, so that two months load and build in minutes) and the daily bench's host
minutes with ping histograms. Figures, each the median of ROUNDS builds with their data tests, as the DAGs run
them (``collectors.orchestration.builds.selection``):

* ``rollups.monthly_seconds_vs_daily``: one monthly build of October ÷ one daily build (both parts) of
  October 15th, with only October's daily marts built;
* ``rollups.monthly_2m_vs_1m``: the same monthly build once September's daily marts are there too ÷ the first:
  a month is rolled up from its own days, so this stays near 1 however long the history.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections.abc import Callable

import psycopg

from collectors.dev import local_postgres
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import selection
from collectors.orchestration.cadences import DAILY, MONTHLY
from collectors.warehouse.migrate import upgrade
from tests.bench.bench_dbt import _load_host_minutes, _ts

SEPTEMBER, OCTOBER, NOVEMBER = dt.date(2026, 9, 1), dt.date(2026, 10, 1), dt.date(2026, 11, 1)
MID_OCTOBER = dt.date(2026, 10, 15)
SERVERS = 4
USERS_PER_SERVER = 100
ROUNDS = 3


def _load_snapshots(conn: psycopg.Connection, first: dt.date, end: dt.date) -> None:
    """Every minute of [first, end): each server lists its users (60 playing, 20 in the lobby, 20 in the menu),
    drifting by 7 ids every 10 minutes, so that a user is on some days of the month and not on others."""
    conn.execute(
        """
        insert into raw.minute_snapshots (server_id, minute, player, spectator, lobby, menu, total,
            battles_total, battles_lobby, battles_in_progress, battle_ids)
        select
            's' || s,
            minute,
            array(select generate_series(b, b + 59)),
            '{}',
            array(select generate_series(b + 60, b + 79)),
            array(select generate_series(b + 80, b + %(last)s)),
            array(select generate_series(b, b + %(last)s)),
            6, 1, 5,
            array(select 's' || s || '-b' || (extract(epoch from minute)::bigint / 1800) || '-' || k
                  from generate_series(1, 6) as k)
        from generate_series(0, %(servers)s - 1) as s
        cross join generate_series(%(first)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                                   interval '1 minute') as minute
        cross join lateral (select s * 100000 + ((extract(epoch from minute)::bigint / 600) %% 2000) * 7 as b)
            as base
        """,
        {"first": _ts(first), "end": _ts(end), "servers": SERVERS, "last": USERS_PER_SERVER - 1},
    )


def _build(cadence_name: str, start: dt.date, end: dt.date, url: str, *, data_tests: bool = True) -> float:
    """One run of a cadence as its DAG builds it (every part, in order), in seconds."""
    cadence = DAILY if cadence_name == "daily" else MONTHLY
    seconds = 0.0
    for part in cadence.parts:
        chosen = selection(cadence, part)
        result = dbt.build(
            chosen.select, _ts(start), _ts(end), database_url=url, exclude=chosen.exclude, data_tests=data_tests
        )
        seconds += result.elapsed_seconds
    return seconds


def _median(action: Callable[[], float]) -> float:
    return statistics.median(action() for _ in range(ROUNDS))


def run(server_url: str) -> dict[str, float]:
    name = f"telemetry_bench_rollups_{os.getpid()}"
    url = local_postgres.create_database(server_url, name, drop=True)
    figures: dict[str, float] = {}
    try:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("minute_snapshots", "message_samples", "host_minutes", "product_events", "accounts_created"):
                conn.execute("select raw.ensure_partitions(%s, %s, %s)", (table, SEPTEMBER, NOVEMBER))
            _load_snapshots(conn, SEPTEMBER, NOVEMBER)
            _load_host_minutes(conn, SEPTEMBER, NOVEMBER - dt.timedelta(days=1))
            conn.execute("analyze")
        # October's daily marts in one run, as a backfill leaves them (the first run also deploys the views)
        dbt.build("+tag:daily", _ts(OCTOBER), _ts(NOVEMBER), database_url=url, data_tests=False)
        daily = _median(lambda: _build("daily", MID_OCTOBER, MID_OCTOBER + dt.timedelta(days=1), url))
        monthly_1m = _median(lambda: _build("monthly", OCTOBER, NOVEMBER, url))
        dbt.build("tag:daily", _ts(SEPTEMBER), _ts(OCTOBER), database_url=url, data_tests=False)
        monthly_2m = _median(lambda: _build("monthly", OCTOBER, NOVEMBER, url))
        figures.update(
            {
                "rollups.daily_seconds": daily,
                "rollups.monthly_seconds": monthly_1m,
                "rollups.monthly_2m_seconds": monthly_2m,
                "rollups.monthly_seconds_vs_daily": monthly_1m / daily,
                "rollups.monthly_2m_vs_1m": monthly_2m / monthly_1m,
            }
        )
    finally:
        local_postgres.drop_database(server_url, name)
    return figures


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_rollups", description=__doc__)
    parser.add_argument("server_url", nargs="?", default=local_postgres.LOCAL_SERVER_URL)
    print(json.dumps(run(parser.parse_args().server_url), indent=2))
