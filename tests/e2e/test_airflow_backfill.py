"""A past week built through a running Airflow (api-server, scheduler, dag-processor, triggerer) with backfills
gives the same marts as the scheduled runs would, row for row.

The scheduled runs' result is built below Airflow in a copy of the same landed week: the hourly range in one
call (equal to one build per hour: tests/dbt/test_week_hour_by_hour.py), then each day, then the week. The
Airflow side is ``collectors.dev.week_runs.run_week``, the code ``make demo`` runs.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.week_runs import last_complete_week, run_week
from collectors.orchestration import dbt_runner as dbt
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


def copy_of(server: local_postgres.PostgresServer, template: str) -> str:
    return local_postgres.create_database(server.url, f"{template}_{uuid.uuid4().hex[:4]}", template=template)


def test_a_backfilled_week_equals_the_scheduled_runs(
    pg_server: local_postgres.PostgresServer, landed: str, tmp_path: Path
) -> None:
    marts = HOURLY_MARTS + DAILY_MARTS + WEEKLY_MARTS
    scheduled_url, airflow_url = copy_of(pg_server, landed), copy_of(pg_server, landed)
    meta_url = local_postgres.create_database(pg_server.url, f"airflow_{landed}")
    try:

        def build(select: str, start: dt.datetime, end: dt.datetime) -> None:
            dbt.build(select, start, end, database_url=scheduled_url, data_tests=False, target_path=tmp_path / "dbt")

        build("+tag:hourly", WEEK_START, WEEK_END)
        for day in range(7):
            build("+tag:daily", WEEK_START + dt.timedelta(days=day), WEEK_START + dt.timedelta(days=day + 1))
        build("+tag:weekly", WEEK_START, WEEK_END)
        expected = snapshot(scheduled_url, marts)
        assert len(expected["fct_telemetry_day"]) == 7 and len(expected["fct_telemetry_week"]) == 1

        airflow = LocalAirflow(
            tmp_path / "home",
            meta_url,
            airflow_url,
            extra_env={
                "TELEMETRY_ARTEFACTS_DIR": str(tmp_path / "artefacts"),
                "TELEMETRY_GX_DIR": str(tmp_path / "gx"),
                # the last day's reliability would wait out its lag (until tomorrow on a Monday)
                "TELEMETRY_RELIABILITY_LAG_WINDOWS": "0",
                # nothing is scheduled on its own: only the backfills run
                "TELEMETRY_SCHEDULE_START": (WEEK_END + dt.timedelta(days=30)).isoformat(),
            },
        )
        airflow.migrate()
        lines: list[str] = []
        with airflow.services():
            runs = run_week(airflow, WEEK_START, progress=lines.append)
        print("\n".join(lines))
        assert runs.succeeded, (runs, lines)
        assert sorted(runs.daily) == [WEEK_START + dt.timedelta(days=d) for d in range(7)]
        assert list(runs.weekly) == [WEEK_START]
        assert snapshot(airflow_url, marts) == expected
        with psycopg.connect(airflow_url) as conn:
            verdict = conn.execute("select bool_and(success), count(*) from quality.validation_runs").fetchone()
            daily_builds = conn.execute(
                "select count(*) from quality.dbt_builds where cadence = 'daily' and dag_id = 'telemetry_daily'"
            ).fetchone()[0]
        assert verdict[0] is True and verdict[1] > 0
        assert daily_builds == 14  # marts and reliability of each day
    finally:
        for url in (scheduled_url, airflow_url, meta_url):
            local_postgres.drop_database(pg_server.url, local_postgres.database_name(url))
