"""Fault: a dbt task killed (SIGKILL) in the middle of its build, then retried, leaves correct marts.

The killed process is the daily ``build_marts`` task's body (``orchestration.builds.build_part``) in a process
of its own, killed once PostgreSQL shows it writing a mart; the retry is the same call again, as Airflow's
retry runs it. Each dbt model is replaced in one transaction, so the kill leaves every mart as it was or
as built; the retry must wait for the dead build's advisory lock to go, rebuild the window, and end with
exactly the marts of a build that was never interrupted. The ledger records the retry only.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.orchestration.builds import build_part
from collectors.orchestration.cadences import CADENCES, Window
from tests.support.landed_week import LandedWeek
from tests.support.simulated import DAILY_MARTS, snapshot

pytestmark = pytest.mark.fault

REPO_ROOT = Path(__file__).resolve().parents[2]
TASK = """
import datetime as dt, sys
from pathlib import Path
from collectors.orchestration.builds import build_part
from collectors.orchestration.cadences import CADENCES, Window
start = dt.datetime.fromisoformat(sys.argv[2])
build_part(CADENCES["daily"], "marts", Window(start, start + dt.timedelta(days=1)), database_url=sys.argv[1],
           artefacts_dir=Path(sys.argv[3]), dag_id="telemetry_daily", run_id="killed")
"""
WRITING = (
    "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
    " and state in ('active', 'idle in transaction') and query ilike '%%\"marts\".%%'"
)


def fresh_copy(server: local_postgres.PostgresServer, landed_week: LandedWeek) -> str:
    url = local_postgres.create_database(
        server.url, f"telemetry_kill_{os.getpid()}_{uuid.uuid4().hex[:6]}", template=landed_week.template
    )
    with psycopg.connect(url, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("select tablename from pg_tables where schemaname = 'marts'")}
        conn.execute("truncate " + ", ".join(f"marts.{t}" for t in DAILY_MARTS if t in existing))
    return url


def test_a_dbt_task_killed_mid_build_and_retried_leaves_the_marts_of_an_uninterrupted_build(
    pg_server: local_postgres.PostgresServer, landed_week: LandedWeek, tmp_path: Path
) -> None:
    day = landed_week.window_start
    window = Window(day, day + dt.timedelta(days=1))
    daily = CADENCES["daily"]
    clean_url, killed_url = fresh_copy(pg_server, landed_week), fresh_copy(pg_server, landed_week)
    try:
        build_part(daily, "marts", window, database_url=clean_url, artefacts_dir=tmp_path / "clean")
        expected = snapshot(clean_url, DAILY_MARTS)
        assert expected["fct_telemetry_day"] and expected["fct_sessions"]

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)])}
        task = subprocess.Popen(
            [sys.executable, "-c", TASK, killed_url, day.isoformat(), str(tmp_path / "killed")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        with psycopg.connect(killed_url, autocommit=True) as watch:
            while not watch.execute(WRITING).fetchone()[0]:
                assert task.poll() is None, "the build ended before it was seen writing a mart"
                assert time.monotonic() - started < 120, "the build never wrote a mart"
                time.sleep(0.01)
        task.send_signal(signal.SIGKILL)
        assert task.wait(30) == -signal.SIGKILL
        print(f"\nfault.dbt_task_kill: killed {time.monotonic() - started:.1f} s into the build, while writing a mart")

        with psycopg.connect(killed_url) as conn:
            assert conn.execute("select count(*) from quality.dbt_builds").fetchone()[0] == 0

        retried = time.monotonic()
        build_part(  # the retry; it waits for the killed build's lock to be released
            daily, "marts", window, database_url=killed_url, artefacts_dir=tmp_path / "killed", run_id="killed"
        )
        print(f"fault.dbt_task_kill: retry done in {time.monotonic() - retried:.1f} s")
        assert snapshot(killed_url, DAILY_MARTS) == expected
        with psycopg.connect(killed_url) as conn:
            ledger = conn.execute("select cadence, part, window_start, window_end from quality.dbt_builds").fetchall()
        assert ledger == [("daily", "marts", window.start, window.end)]
    finally:
        for url in (clean_url, killed_url):
            local_postgres.drop_database(pg_server.url, local_postgres.database_name(url))
