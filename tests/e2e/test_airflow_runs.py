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

from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import PARTS
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.partitions import list_partitions
from tests.support.landed_week import LandedWeek
from tests.support.simulated import DAILY_MARTS, HOURLY_MARTS, snapshot

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


def weekly_retention(landed_week: LandedWeek) -> dict[str, str]:
    """Environment for the weekly run of the landed week: the old Sunday is past the retention, the Monday is not.

    The cleanup counts the retention back from today (UTC).
    """
    keep_days = (dt.datetime.now(dt.UTC).date() - landed_week.old_day).days - 1
    env = {f"TELEMETRY_RETENTION_{t.upper()}": str(keep_days) for t in RAW_TABLES}
    env["TELEMETRY_RELIABILITY_LAG_WINDOWS"] = "0"
    return env


def ledger_covers(url: str, landed_week: LandedWeek) -> None:
    """Record every build the old day feeds, so only validation can stop the cleanup (coverage: test_cleanup)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for cadence in ("hourly", "daily", "weekly"):
            for part in PARTS:
                conn.execute(
                    "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds)"
                    " values (%s, %s, %s, %s, 0, 0)",
                    (cadence, part, landed_week.window_start - dt.timedelta(days=400), landed_week.window_end),
                )


def partition_days(url: str) -> dict[str, dt.date]:
    """Every raw partition's name and day."""
    with psycopg.connect(url) as conn:
        return {p.name: p.day for table in RAW_TABLES for p in list_partitions(conn, table)}


def test_a_daily_run_after_its_24_hourly_runs_equals_a_full_refresh_and_a_rerun_changes_nothing(
    airflow_meta: str, week_url: str, landed_week: LandedWeek, pg_server: local_postgres.PostgresServer, tmp_path: Path
) -> None:
    """A day built by its 24 hourly builds, then the daily DAG run (twice), equals a full refresh, row for row.

    The hourly builds are the hourly DAG's dbt builds below Airflow (24 ``dags test`` would cost 12 minutes);
    ``test_an_hourly_run_fills_exactly_its_hour`` runs one through Airflow.
    """
    day = landed_week.window_start  # the simulation covers its first 12 hours (and the 12 before it)
    next_day = day + dt.timedelta(days=1)
    marts = HOURLY_MARTS + DAILY_MARTS
    with psycopg.connect(week_url, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("select tablename from pg_tables where schemaname = 'marts'")}
        conn.execute("truncate " + ", ".join(f"marts.{t}" for t in marts if t in existing))
    for hour in range(24):
        start = day + dt.timedelta(hours=hour)
        dbt.build(
            "+tag:hourly" if hour == 0 else "tag:hourly",  # the first build also creates the staging views
            start,
            start + dt.timedelta(hours=1),
            database_url=week_url,
            data_tests=False,
            target_path=tmp_path / "hourly",
        )
    airflow = local_airflow(airflow_meta, week_url, tmp_path)
    done = airflow.dags_test("telemetry_daily", next_day)  # the interval [day, next_day)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    incremental = snapshot(week_url, marts, day, next_day)
    assert len(incremental["fct_host_metrics_hourly"]) == 2 * 12  # two hosts, twelve simulated hours
    assert incremental["fct_telemetry_day"] and incremental["fct_sessions"] and incremental["fct_funnel_daily"]
    everything = snapshot(week_url, marts)  # the daily funnel run also recomputes the day before

    again = airflow.dags_test("telemetry_daily", next_day)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert snapshot(week_url, marts) == everything

    name = f"telemetry_full_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    full_url = local_postgres.create_database(pg_server.url, name, template=landed_week.template)
    try:  # a full refresh rebuilds every mart from all raw data (both simulated days)
        dbt.build(
            "+tag:hourly +tag:daily",
            landed_week.window_start - dt.timedelta(days=1),
            next_day,
            database_url=full_url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp_path / "full",
        )
        assert snapshot(full_url, marts, day, next_day) == incremental
    finally:
        local_postgres.drop_database(pg_server.url, name)


def test_a_weekly_run_over_clean_data_drops_exactly_the_partitions_past_the_retention(
    airflow_meta: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    ledger_covers(week_url, landed_week)
    before = partition_days(week_url)
    cutoff = landed_week.window_start.date()  # window end minus the retention of 7 days
    expired = {name for name, day in before.items() if day < cutoff}
    assert {p.name for p in landed_week.partitions} <= expired  # the old Sunday's, with data, and older empty ones
    with psycopg.connect(week_url) as conn:
        monday_rows = conn.execute(
            "select count(*) from raw.minute_snapshots where minute >= %s", (landed_week.window_start,)
        ).fetchone()[0]
    airflow = local_airflow(airflow_meta, week_url, tmp_path, **weekly_retention(landed_week))
    done = airflow.dags_test("telemetry_weekly", landed_week.window_end)  # the interval [window_start, window_end)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = partition_days(week_url)
    assert set(before) - set(after) == expired
    assert set(after) == {name for name, day in before.items() if day >= cutoff}
    with psycopg.connect(week_url) as conn:
        logged = conn.execute("select partition_name from quality.cleanup_log where action = 'dropped'").fetchall()
        passed = conn.execute("select bool_and(success), count(*) from quality.validation_runs").fetchone()
        kept_rows = conn.execute(
            "select count(*) from raw.minute_snapshots where minute >= %s", (landed_week.window_start,)
        ).fetchone()[0]
    assert {row[0] for row in logged} == expired and len(logged) == len(expired)
    assert passed[0] is True and passed[1] > 0
    assert kept_rows == monday_rows > 0


def test_a_weekly_run_over_a_corrupt_row_fails_and_drops_nothing(
    airflow_meta: str, week_url: str, landed_week: LandedWeek, tmp_path: Path
) -> None:
    old = landed_week.old_day
    ledger_covers(week_url, landed_week)
    with psycopg.connect(week_url, autocommit=True) as conn:
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
    airflow = local_airflow(airflow_meta, week_url, tmp_path, **weekly_retention(landed_week))
    done = airflow.dags_test("telemetry_weekly", landed_week.window_end)  # the interval [window_start, window_end)
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
