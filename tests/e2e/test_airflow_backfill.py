"""A past week built through a running Airflow (api-server, scheduler, dag-processor, triggerer) with range runs
and backfills gives the same marts as the scheduled runs would, row for row.

The scheduled runs' result is built below Airflow, in a copy of the same landed week, while Airflow works: the
hourly range in one call (equal to one build per hour: tests/dbt/test_week_hour_by_hour.py), then each day,
then the week. The Airflow side is ``collectors.dev.week_runs.run_week``, the code ``make demo`` runs: the hourly
DAG in one range run, the daily DAG in a range run over the first six days and a backfill of the last (the demo
backfills all seven; each daily run costs two dbt tasks), the weekly DAG as a backfill (build, Great
Expectations, cleanup).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.week_runs import last_complete_week, run_week
from collectors.orchestration import dbt_runner as dbt
from tests.e2e.conftest import ModuleAirflow, running_airflow
from tests.support.simulated import DAILY_MARTS, HOURLY_MARTS, land_simulation, snapshot

pytestmark = pytest.mark.e2e

WEEKLY_MARTS = (
    "fct_telemetry_week",
    "fct_minutes_per_user_weekly",
    "fct_channel_reliability_weekly",
    "fct_reliability_weekly",
    "fct_host_metrics_weekly",
    "fct_funnel_weekly",
    "fct_retention_weekly",
    "fct_feature_adoption_weekly",
)
WEEK_START = last_complete_week()
WEEK_END = WEEK_START + dt.timedelta(days=7)
BACKFILLED_DAYS = 1


@pytest.fixture(scope="module")
def landed(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The last complete week, simulated at a small scale and landed (nothing built); a template database."""
    config = SimulationConfig(
        start=WEEK_START,
        end=WEEK_END,
        seed=23,
        servers=1,
        users=20,
        new_accounts_per_day=2,
        channels=2,
        messages_per_channel_per_hour=2.0,
    )
    name = f"telemetry_backfill_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    try:
        _, accepted = land_simulation(
            url, config, tmp_path_factory.mktemp("spool"), retention=RetentionDays(message_samples=30)
        )
        assert all(accepted.get(kind) for kind in ("minute_snapshots", "message_samples", "product_events"))
        yield name
    finally:
        local_postgres.drop_database(pg_server.url, name)


@pytest.fixture(scope="module")
def starting_airflow(
    pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], ModuleAirflow]]:
    # the last day's reliability would wait out its lag (until tomorrow on a Monday)
    with running_airflow(pg_server, tmp_path_factory.mktemp("airflow"), TELEMETRY_RELIABILITY_LAG_WINDOWS="0") as up:
        yield up


@pytest.fixture(scope="module")
def airflow(starting_airflow: Callable[[], ModuleAirflow], landed: str) -> ModuleAirflow:
    """The module's Airflow, started before the week is landed (so that it boots meanwhile)."""
    return starting_airflow()


def builds(url: str, cadence: str) -> list[tuple[str, dt.datetime, dt.datetime, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select part, window_start, window_end, run_id from quality.dbt_builds where cadence = %s"
            " order by part, window_start",
            (cadence,),
        ).fetchall()


def tiles(rows: list[tuple[str, dt.datetime, dt.datetime, str]], part: str, start: dt.datetime, end: dt.datetime):
    """The part's builds cover ``[start, end)`` exactly once: each starts where the one before ended."""
    bounds = [(s, e) for p, s, e, _ in rows if p == part]
    return (
        bool(bounds)
        and bounds[0][0] == start
        and bounds[-1][1] == end
        and all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    )


def scheduled_runs(url: str, target: Path) -> None:
    """The marts the scheduled runs would build, below Airflow: the hourly range in one call (equal to one build
    per hour: tests/dbt/test_week_hour_by_hour.py), then each day, then the week."""

    def build(select: str, start: dt.datetime, end: dt.datetime) -> None:
        dbt.build(select, start, end, database_url=url, data_tests=False, target_path=target)

    build("+tag:hourly", WEEK_START, WEEK_END)
    for day in range(7):
        build("+tag:daily", WEEK_START + dt.timedelta(days=day), WEEK_START + dt.timedelta(days=day + 1))
    build("+tag:weekly", WEEK_START, WEEK_END)


def test_a_backfilled_week_equals_the_scheduled_runs(
    airflow: ModuleAirflow, landed: str, pg_server: local_postgres.PostgresServer, tmp_path: Path
) -> None:
    marts = HOURLY_MARTS + DAILY_MARTS + WEEKLY_MARTS
    airflow_url = airflow.use_warehouse(landed)
    scheduled_url = local_postgres.create_database(pg_server.url, f"{landed}_{uuid.uuid4().hex[:4]}", template=landed)
    pool = ThreadPoolExecutor(1)
    try:
        # built while Airflow works (this process only polls it meanwhile)
        reference = pool.submit(scheduled_runs, scheduled_url, tmp_path / "dbt")
        lines: list[str] = []
        runs = run_week(airflow, WEEK_START, backfilled_days=BACKFILLED_DAYS, progress=lines.append)
        print("\n".join(lines))
        assert runs.succeeded, (runs, lines)
        assert sorted(runs.daily) == [WEEK_END - dt.timedelta(days=d) for d in range(BACKFILLED_DAYS, 0, -1)]
        assert list(runs.weekly) == [WEEK_START]
        reference.result()
        expected = snapshot(scheduled_url, marts)
        assert len(expected["fct_telemetry_day"]) == 7 and len(expected["fct_telemetry_week"]) == 1
        assert snapshot(airflow_url, marts) == expected
        with psycopg.connect(airflow_url) as conn:
            verdict = conn.execute("select bool_and(success), count(*) from quality.validation_runs").fetchone()
        assert verdict[0] is True and verdict[1] > 0
        hourly, daily = builds(airflow_url, "hourly"), builds(airflow_url, "daily")
        assert [(p, s, e) for p, s, e, _ in hourly] == [
            ("marts", WEEK_START, WEEK_END),
            ("reliability", WEEK_START, WEEK_END),
        ]
        assert len(daily) == 2 * (1 + BACKFILLED_DAYS)  # marts and reliability of the range run and of each day
        assert all(tiles(daily, part, WEEK_START, WEEK_END) for part in ("marts", "reliability")), daily
        assert len({run_id for *_, run_id in daily}) == 1 + BACKFILLED_DAYS
    finally:
        pool.shutdown()
        local_postgres.drop_database(pg_server.url, local_postgres.database_name(scheduled_url))
