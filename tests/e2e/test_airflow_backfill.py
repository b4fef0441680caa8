"""A past week built through a running Airflow (api-server, scheduler, dag-processor) with range runs
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
from collections.abc import Callable, Iterator

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.dev.week_runs import run_week
from tests.e2e.conftest import MARTS, WEEK_END, WEEK_START, BackfillWeek, ModuleAirflow, running_airflow
from tests.support.simulated import snapshot

pytestmark = pytest.mark.e2e

BACKFILLED_DAYS = 1


@pytest.fixture(scope="module")
def starting_airflow(
    pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], ModuleAirflow]]:
    with running_airflow(pg_server, tmp_path_factory.mktemp("airflow")) as up:
        yield up


@pytest.fixture(scope="module")
def airflow(starting_airflow: Callable[[], ModuleAirflow], backfill_week: BackfillWeek) -> ModuleAirflow:
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


def test_a_backfilled_week_equals_the_scheduled_runs(airflow: ModuleAirflow, backfill_week: BackfillWeek) -> None:
    airflow_url = airflow.use_warehouse(backfill_week.landed)
    backfill_week.start_scheduled_runs()  # built while Airflow works (this process only polls it meanwhile)
    lines: list[str] = []
    runs = run_week(airflow, WEEK_START, backfilled_days=BACKFILLED_DAYS, progress=lines.append)
    print("\n".join(lines))
    assert runs.succeeded, (runs, lines)
    assert sorted(runs.daily) == [WEEK_END - dt.timedelta(days=d) for d in range(BACKFILLED_DAYS, 0, -1)]
    assert list(runs.weekly) == [WEEK_START]
    expected = backfill_week.scheduled_runs().marts
    assert len(expected["fct_telemetry_day"]) == 7 and len(expected["fct_telemetry_week"]) == 1
    assert snapshot(airflow_url, MARTS) == expected
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
