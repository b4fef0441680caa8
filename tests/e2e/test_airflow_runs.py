"""End to end with a running Airflow (scheduler, LocalExecutor, dag-processor, api-server), real dbt, GX, PostgreSQL.

The module's Airflow builds one warehouse database, which each test recreates from the module's landed and
built period (``tests.support.landed_week``) or from that period once its daily runs have built it too (the
weekly marts read the daily tables, which a weekly run does not rebuild). Runs are made as the scheduler makes
them, as backfills of one period: each owns the data interval the scheduled run of that period would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.dev.local_airflow import AirflowApiError
from collectors.dev.week_runs import last_complete_week
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import PARTS
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.partitions import list_partitions
from tests.e2e.conftest import ModuleAirflow, running_airflow
from tests.support.landed_week import LandedWeek
from tests.support.simulated import DAILY_MARTS, HOURLY_MARTS, snapshot

pytestmark = pytest.mark.e2e


# the landed period's old day (tests.support.landed_week), known before it is landed: Airflow starts meanwhile
OLD_DAY = (last_complete_week() - dt.timedelta(days=1)).date()


def weekly_retention(old_day: dt.date) -> dict[str, str]:
    """Environment for the weekly run of the landed week: the old Sunday is past the retention, the Monday is not.

    The cleanup counts the retention back from today (UTC). At least 7 days, so the reliability look-back (7 days,
    cut to the message samples' retention) is the same as in a build outside Airflow.
    """
    keep_days = (dt.datetime.now(dt.UTC).date() - old_day).days - 1
    assert keep_days >= RetentionDays().message_samples
    return {f"TELEMETRY_RETENTION_{t.upper()}": str(keep_days) for t in RAW_TABLES}


@pytest.fixture(scope="module")
def starting_airflow(
    pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], ModuleAirflow]]:
    with running_airflow(pg_server, tmp_path_factory.mktemp("airflow"), **weekly_retention(OLD_DAY)) as up:
        yield up


@pytest.fixture(scope="module")
def airflow(starting_airflow: Callable[[], ModuleAirflow], landed_week: LandedWeek) -> ModuleAirflow:
    """The module's Airflow, started before the landed week (so that it boots while the week lands)."""
    assert landed_week.old_day == OLD_DAY
    return starting_airflow()


@pytest.fixture(scope="module")
def after_daily_runs(
    pg_server: local_postgres.PostgresServer, landed_week: LandedWeek, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The landed period once its daily runs have built it too (the weekly marts read the daily tables), as in
    production, where the daily runs precede the weekly one; a template database."""
    name = f"telemetry_daily_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name, template=landed_week.template)
    try:
        dbt.build(
            "+tag:daily",
            landed_week.window_start - dt.timedelta(days=1),
            landed_week.window_start + dt.timedelta(days=1),
            database_url=url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp_path_factory.mktemp("daily_dbt"),
        )
        yield name
    finally:
        local_postgres.drop_database(pg_server.url, name)


def run(airflow: ModuleAirflow, dag_id: str, start: dt.datetime, expect: str = "success") -> str:
    """The run of ``dag_id`` whose data interval starts at ``start``, made as the scheduler makes it (a backfill of
    that one period) and waited for; its run id. An earlier run of that period (another test's) is deleted first."""
    period = {"logical_date_gte": start.isoformat(), "logical_date_lte": start.isoformat()}
    for earlier in airflow.runs(dag_id, **period):
        airflow.api("DELETE", f"dags/{dag_id}/dagRuns/{earlier['dag_run_id']}")
    states = airflow.backfill(dag_id, start, start, max_active_runs=1, timeout=600)
    (made,) = airflow.runs(dag_id, **period)
    assert states == {start: expect}, (states, airflow.task_states(dag_id, made["dag_run_id"]))
    return str(made["dag_run_id"])


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


def test_an_hourly_run_fills_exactly_its_hour(airflow: ModuleAirflow, landed_week: LandedWeek) -> None:
    url = airflow.use_warehouse(landed_week.template)
    hour = landed_week.window_start + dt.timedelta(hours=3)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate marts.fct_host_metrics_hourly, marts.fct_reliability_hourly")
        hosts = conn.execute(
            "select count(distinct host_id) from raw.host_minutes where minute >= %s and minute < %s",
            (hour, hour + dt.timedelta(hours=1)),
        ).fetchone()[0]
    run_id = run(airflow, "telemetry_hourly", hour)  # the interval [hour, hour + 1 h)
    with psycopg.connect(url) as conn:
        hours = conn.execute(
            "select hour_start, count(*) from marts.fct_host_metrics_hourly group by hour_start"
        ).fetchall()
        reliability = conn.execute("select hour_start from marts.fct_reliability_hourly").fetchall()
        builds = conn.execute(
            "select part, window_start, window_end, run_id, artefacts_path from quality.dbt_builds"
        ).fetchall()
    assert hosts > 0 and hours == [(hour, hosts)]
    assert reliability == [(hour,)]
    assert sorted(build[:4] for build in builds) == [
        ("marts", hour, hour + dt.timedelta(hours=1), run_id),
        ("reliability", hour, hour + dt.timedelta(hours=1), run_id),
    ]
    for *_, kept in builds:
        results = json.loads((Path(kept) / "run_results.json").read_text())
        assert results["results"] and all(r["status"] in ("success", "pass") for r in results["results"])


def test_a_weekly_run_over_clean_data_drops_exactly_the_partitions_past_the_retention(
    airflow: ModuleAirflow, after_daily_runs: str, landed_week: LandedWeek
) -> None:
    url = airflow.use_warehouse(after_daily_runs)
    ledger_covers(url, landed_week)
    before = partition_days(url)
    cutoff = landed_week.window_start.date()  # window end minus the retention of 7 days
    expired = {name for name, day in before.items() if day < cutoff}
    assert {p.name for p in landed_week.partitions} <= expired  # the old Sunday's, with data, and older empty ones
    with psycopg.connect(url) as conn:
        monday_rows = conn.execute(
            "select count(*) from raw.minute_snapshots where minute >= %s", (landed_week.window_start,)
        ).fetchone()[0]
    run_id = run(airflow, "telemetry_weekly", landed_week.window_start)  # [window_start, window_end)
    after = partition_days(url)
    assert set(before) - set(after) == expired
    assert set(after) == {name for name, day in before.items() if day >= cutoff}
    with psycopg.connect(url) as conn:
        logged = conn.execute("select partition_name from quality.cleanup_log where action = 'detached'").fetchall()
        waiting = conn.execute("select count(*) from pg_tables where schemaname = 'raw_detached'").fetchone()[0]
        passed = conn.execute("select bool_and(success), count(*) from quality.validation_runs").fetchone()
        kept_rows = conn.execute(
            "select count(*) from raw.minute_snapshots where minute >= %s", (landed_week.window_start,)
        ).fetchone()[0]
        weekly_builds = conn.execute(
            "select part, window_start, window_end from quality.dbt_builds where run_id = %s", (run_id,)
        ).fetchall()
    assert {row[0] for row in logged} == expired and len(logged) == len(expired)
    assert waiting == len(expired)  # detached, kept for the grace period
    assert passed[0] is True and passed[1] > 0
    assert kept_rows == monday_rows > 0
    window = (landed_week.window_start, landed_week.window_end)
    assert sorted(weekly_builds) == [("marts", *window), ("reliability", *window)]


# The tests between the two weekly runs give the scheduler time to close the first one's backfill: Airflow refuses
# a backfill of a DAG while its last one is open, and the scheduler closes a finished one on a 30-s timer only.
def test_a_daily_run_after_the_days_hourly_builds_equals_a_full_refresh_and_a_rerun_changes_nothing(
    airflow: ModuleAirflow, landed_week: LandedWeek, pg_server: local_postgres.PostgresServer, tmp_path: Path
) -> None:
    """A day built by its hourly builds, then the daily DAG's run (and that run cleared and run again), equals a
    full refresh, row for row.

    The hourly builds are the hourly DAG's dbt build below Airflow, over the day's 24 hours in one call (hour by
    hour equals one build: tests/dbt/test_week_hour_by_hour.py; an hourly run through Airflow: the first test).
    """
    day = landed_week.window_start  # the simulation covers its first 12 hours (and the 12 before it)
    next_day = day + dt.timedelta(days=1)
    marts = HOURLY_MARTS + DAILY_MARTS
    url = airflow.use_warehouse(landed_week.template)
    with psycopg.connect(url, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("select tablename from pg_tables where schemaname = 'marts'")}
        conn.execute("truncate " + ", ".join(f"marts.{t}" for t in marts if t in existing))
    dbt.build("+tag:hourly", day, next_day, database_url=url, data_tests=False, target_path=tmp_path / "hourly")

    name = f"telemetry_full_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    full_url = local_postgres.create_database(pg_server.url, name, template=landed_week.template)
    pool = ThreadPoolExecutor(1)
    try:
        # a full refresh rebuilds every mart from all raw data (both simulated days); built while Airflow works
        full = pool.submit(
            dbt.build,
            "+tag:hourly +tag:daily",
            landed_week.window_start - dt.timedelta(days=1),
            next_day,
            database_url=full_url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp_path / "full",
        )
        run_id = run(airflow, "telemetry_daily", day)  # the interval [day, next_day)
        incremental = snapshot(url, marts, day, next_day)
        assert len(incremental["fct_host_metrics_hourly"]) == 2 * 12  # two hosts, twelve simulated hours
        assert incremental["fct_telemetry_day"] and incremental["fct_sessions"] and incremental["fct_funnel_daily"]
        everything = snapshot(url, marts)  # the daily funnel run also recomputes the day before

        airflow.clear("telemetry_daily", run_id)
        assert airflow.wait_run("telemetry_daily", run_id, timeout=600) == "success"
        assert snapshot(url, marts) == everything
        with psycopg.connect(url) as conn:
            builds = conn.execute(
                "select part, window_start, window_end, run_id from quality.dbt_builds where cadence = 'daily'"
            ).fetchall()
        assert sorted(builds) == [("marts", day, next_day, run_id)] * 2 + [("reliability", day, next_day, run_id)] * 2

        full.result()
        assert snapshot(full_url, marts, day, next_day) == incremental
    finally:
        pool.shutdown()
        local_postgres.drop_database(pg_server.url, name)


def test_a_window_off_the_cadence_is_refused_when_triggered_and_check_window_fails_it_without_retries(
    airflow: ModuleAirflow, landed_week: LandedWeek
) -> None:
    """A bound off the hour is refused by Airflow's param validation, through the REST API and the CLI, and no
    run exists; a weekly range that starts on a Tuesday passes the schema (a pattern cannot tell a Monday) and
    fails in ``check_window``, once, with nothing after it run."""
    off_the_hour = {"window_start": "2026-11-16T05:30:00Z", "window_end": "2026-11-16T07:00:00Z"}
    with pytest.raises(AirflowApiError) as refused:
        airflow.trigger("telemetry_hourly", "manual__off_the_hour", off_the_hour)
    assert refused.value.status == 400 and "Invalid input for param window_start" in str(refused.value.detail)
    cli = airflow.airflow(
        "dags", "trigger", "telemetry_daily", "--run-id", "manual__not_midnight", "--conf",
        json.dumps({"window_start": "2026-11-16T00:00:00Z", "window_end": "2026-11-17T05:00:00+00:00"}),
        check=False,
    )  # fmt: skip
    assert cli.returncode != 0 and "Invalid input for param window_end" in cli.stdout + cli.stderr
    assert airflow.run_state("telemetry_hourly", "manual__off_the_hour") == "not created"
    assert airflow.run_state("telemetry_daily", "manual__not_midnight") == "not created"

    url = airflow.use_warehouse(landed_week.template)
    airflow.unpause("telemetry_weekly")
    tuesday = {"window_start": "2026-11-17T00:00:00Z", "window_end": "2026-11-24T00:00:00Z"}
    airflow.trigger("telemetry_weekly", "manual__tuesday", tuesday)
    assert airflow.wait_run("telemetry_weekly", "manual__tuesday", timeout=300) == "failed"
    tasks = airflow.task_instances("telemetry_weekly", "manual__tuesday")
    assert (tasks["check_window"]["state"], tasks["check_window"]["try_number"]) == ("failed", 1)
    assert tasks["check_window"]["max_tries"] == 0
    assert {task: ti["state"] for task, ti in tasks.items() if task != "check_window"} == dict.fromkeys(
        ("build_marts", "wait_reliability_lag", "build_reliability", "validate", "cleanup"), "upstream_failed"
    )
    with psycopg.connect(url) as conn:
        (error,) = conn.execute(
            "select error from quality.task_failures where task_id = 'check_window' and run_id = 'manual__tuesday'"
        ).fetchone()
    assert "2026-11-17T00:00:00+00:00 is not on a weekly boundary" in error


def test_a_weekly_run_over_a_corrupt_row_fails_and_drops_nothing(
    airflow: ModuleAirflow, after_daily_runs: str, landed_week: LandedWeek
) -> None:
    old = landed_week.old_day
    url = airflow.use_warehouse(after_daily_runs)
    ledger_covers(url, landed_week)
    with psycopg.connect(url, autocommit=True) as conn:
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
    run_id = run(airflow, "telemetry_weekly", landed_week.window_start, expect="failed")
    tasks = airflow.task_instances("telemetry_weekly", run_id)
    assert tasks["build_reliability"]["state"] == "success"
    assert tasks["validate"]["state"] == "failed" and tasks["validate"]["try_number"] == 1
    assert tasks["cleanup"]["state"] == "upstream_failed"
    log = airflow.task_log("telemetry_weekly", run_id, "validate")
    assert "data validation failed; nothing will be dropped" in log and "battles_lobby" in log
    with psycopg.connect(url) as conn:
        after = conn.execute("select count(*) from pg_inherits").fetchone()[0]
        dropped = conn.execute(
            "select count(*) from quality.cleanup_log where action in ('detached', 'dropped')"
        ).fetchone()[0]
        failed = conn.execute(
            "select asset, failures::text, data_docs_path from quality.validation_runs where not success"
        ).fetchall()
        recorded = conn.execute("select task_id, error from quality.task_failures where run_id = %s", (run_id,))
        recorded = recorded.fetchall()
    assert after == before and dropped == 0
    assert any("minute_snapshots" in asset and "battles_lobby" in failures for asset, failures, _ in failed)
    pages = [Path(page) for asset, _, page in failed if "minute_snapshots" in asset]
    assert pages and all(page.exists() and str(airflow.extra_env["TELEMETRY_GX_DIR"]) in str(page) for page in pages)
    assert [(task, error.split(":")[0]) for task, error in recorded] == [("validate", "AirflowFailException")]
