"""End to end with real Airflow (``airflow dags test``), real dbt, real GX and real PostgreSQL.

The warehouse is the module's landed and built period (``conftest.landed_week``), one private copy per test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from telemetry_ops.local_airflow import LocalAirflow

from collectors.warehouse import local_postgres
from collectors.warehouse.db import RAW_TABLES
from tests.plugins.conftest import LandedWeek

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def airflow_meta(pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"airflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name)
    LocalAirflow(tmp_path_factory.mktemp("airflow"), url, url).migrate()
    yield url
    local_postgres.drop_database(pg_server.url, name)


def local_airflow(meta: str, warehouse: str, tmp: Path, **env: str) -> LocalAirflow:
    extra = {"TELEMETRY_ARTEFACTS_DIR": str(tmp / "artefacts"), "TELEMETRY_GX_DIR": str(tmp / "gx"), **env}
    return LocalAirflow(tmp / "home", meta, warehouse, extra_env=extra)


def test_an_hourly_run_fills_exactly_its_hour(
    airflow_meta: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    hour = landed_week.window_start + dt.timedelta(hours=3)
    with psycopg.connect(week_url, autocommit=True) as conn:
        hosts = conn.execute("select count(distinct host_id) from marts.fct_host_metrics_hourly").fetchone()[0]
        conn.execute("truncate marts.fct_host_metrics_hourly, marts.fct_reliability_hourly")
    airflow = local_airflow(airflow_meta, week_url, tmp_path)
    # with a data-interval timetable, `dags test` at logical date L runs the interval [L - 1 h, L)
    done = airflow.dags_test("telemetry_hourly", hour + dt.timedelta(hours=1))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with psycopg.connect(week_url) as conn:
        hours = conn.execute(
            "select hour_start, count(*) from marts.fct_host_metrics_hourly group by hour_start"
        ).fetchall()
        reliability = conn.execute("select hour_start from marts.fct_reliability_hourly").fetchall()
        builds = conn.execute(
            "select part, window_start, window_end, artefacts_path from quality.dbt_builds"
        ).fetchall()
    assert hosts > 0 and hours == [(hour, hosts)]
    assert reliability == [(hour,)]
    assert sorted((part, s, e) for part, s, e, _ in builds) == [
        ("marts", hour, hour + dt.timedelta(hours=1)),
        ("reliability", hour, hour + dt.timedelta(hours=1)),
    ]
    for *_, kept in builds:
        results = json.loads((Path(kept) / "run_results.json").read_text())
        assert results["results"] and all(r["status"] in ("success", "pass") for r in results["results"])


def test_a_weekly_run_over_a_corrupt_row_fails_and_drops_nothing(
    airflow_meta: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    old = landed_week.old_day
    # the weekly run of the last complete week; its cleanup counts the retention back from that week's end
    today = dt.datetime.now(dt.UTC).date()
    monday = dt.datetime.combine(today - dt.timedelta(days=today.weekday()), dt.time(), dt.UTC)
    keep_days = (monday.date() - old).days - 1
    if keep_days < 1:
        pytest.skip("the landed old day lies in the current week (Wednesday to Sunday); no weekly run can drop it yet")
    retention = {f"TELEMETRY_RETENTION_{t.upper()}": str(keep_days) for t in RAW_TABLES}
    retention["TELEMETRY_RELIABILITY_LAG_WINDOWS"] = "0"
    # every build the old day feeds is in the ledger, so only validation can stop the cleanup
    with psycopg.connect(week_url, autocommit=True) as conn:
        for cadence in ("hourly", "daily", "weekly"):
            for part in ("marts", "reliability"):
                conn.execute(
                    "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds)"
                    " values (%s, %s, %s, %s, 0, 0)",
                    (cadence, part, landed_week.window_start - dt.timedelta(weeks=6), landed_week.window_end),
                )
        for constraint in conn.execute(
            "select conname from pg_constraint where conrelid = 'raw.minute_snapshots'::regclass and contype = 'c'"
        ).fetchall():
            conn.execute(f'alter table raw.minute_snapshots drop constraint "{constraint[0]}"')
        conn.execute(
            "update raw.minute_snapshots set battles_lobby = -1"
            " where minute = (select min(minute) from raw.minute_snapshots where minute::date = %s)",
            (old,),
        )
        before = conn.execute("select count(*) from pg_inherits").fetchone()[0]
    airflow = local_airflow(airflow_meta, week_url, tmp_path, **retention)
    done = airflow.dags_test("telemetry_weekly", monday)  # the interval [monday - 1 week, monday)
    output = done.stdout + done.stderr
    assert "data validation failed; nothing will be dropped" in output
    with psycopg.connect(week_url) as conn:
        after = conn.execute("select count(*) from pg_inherits").fetchone()[0]
        dropped = conn.execute("select count(*) from quality.cleanup_log where action = 'dropped'").fetchone()[0]
        failed = conn.execute("select asset, failures::text from quality.validation_runs where not success").fetchall()
    assert after == before and dropped == 0
    assert any("minute_snapshots" in asset and "battles_lobby" in failures for asset, failures in failed)
    index = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.exists()
