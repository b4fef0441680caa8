"""Days built the way Airflow builds them (each hour, then each day) give the same marts as building the whole
range in one run.

A small seeded population is simulated over the past ``DAYS`` UTC days and sent through a real receiver. dbt
builds the hourly marts the three ways Airflow does: the hours around the last midnight one run per hour, as the
schedule does (reliability's look-back and look-ahead then cross runs and the day boundary), the hours before
them in one run, as a backfill would, and the hours after them in one run, as a catch-up after an outage; then
``tag:daily`` for each day. The marts are read back, the whole range is rebuilt in one run (``delete+insert`` of
the range's window), and every hourly and daily mart must hold exactly the same rows. Each dbt build costs 2 to
6 s on two cores, so the suite runs two days with 8 hourly runs (13 builds); ``TELEMETRY_EQUIVALENCE_DAYS=7``
runs the whole week.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.dev.simulator.config import SimulationConfig
from collectors.orchestration import dbt_runner as dbt
from tests.support.simulated import DAILY_MARTS, HOURLY_MARTS, land_simulation, snapshot

END = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
DAYS = int(os.environ.get("TELEMETRY_EQUIVALENCE_DAYS", "2"))
START = END - dt.timedelta(days=DAYS)
HOUR = dt.timedelta(hours=1)
HOURS_AROUND_MIDNIGHT = 4 * HOUR  # built one run per hour on each side of the last midnight
CONFIG = SimulationConfig(
    start=START,
    end=END,
    seed=5,
    servers=2,
    users=60,
    new_accounts_per_day=5,
    channels=3,
    messages_per_channel_per_hour=6.0,
)


@pytest.fixture(scope="module")
def week_url(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = f"telemetry_week_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    tmp = tmp_path_factory.mktemp("week")
    try:
        land_simulation(url, CONFIG, tmp / "spool")
        yield url
    finally:
        local_postgres.drop_database(pg_server.url, name)


@pytest.mark.slow
def test_days_built_hour_by_hour_and_day_by_day_equal_one_run(week_url: str, tmp_path: Path) -> None:
    def build(select: str, start: dt.datetime, end: dt.datetime) -> None:
        dbt.build(select, start, end, database_url=week_url, target_path=tmp_path / "dbt", data_tests=False)

    with psycopg.connect(week_url) as conn:
        landed = conn.execute("select count(*) from raw.message_samples").fetchone()[0]
    assert landed > 5_000  # a real week of data, not an empty build

    last_midnight = END - dt.timedelta(days=1)
    by_hour = (max(START, last_midnight - HOURS_AROUND_MIDNIGHT), last_midnight + HOURS_AROUND_MIDNIGHT)
    runs = [(START, by_hour[0])] if by_hour[0] > START else []  # a backfill's one run
    runs += [(by_hour[0] + i * HOUR, by_hour[0] + (i + 1) * HOUR) for i in range((by_hour[1] - by_hour[0]) // HOUR)]
    runs.append((by_hour[1], END))  # a catch-up's one run
    for number, (begin, end) in enumerate(runs):
        build("tag:hourly" if number else "+tag:hourly", begin, end)  # the first run also creates the staging views
    for day in range(DAYS):
        begin = START + dt.timedelta(days=day)
        build("+tag:daily", begin, begin + dt.timedelta(days=1))
    incremental = snapshot(week_url, HOURLY_MARTS + DAILY_MARTS)

    assert len(incremental["fct_reliability_hourly"]) == DAYS * 24  # every hour has messages
    assert len(incremental["fct_host_metrics_hourly"]) == 2 * DAYS * 24  # one row per host and hour
    assert len(incremental["fct_telemetry_day"]) == DAYS

    build("+tag:hourly +tag:daily", START, END)
    assert snapshot(week_url, HOURLY_MARTS + DAILY_MARTS) == incremental
