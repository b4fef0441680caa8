"""A small simulated period landed through a real receiver and built into marts, shared by the module's tests.

The simulation covers 24 hours across the UTC midnight that starts the last complete week (Sunday to Monday):
the Sunday (the "old day") plays the raw partitions the weekly cleanup is about to drop, the Monday opens the
weekly window that the weekly run of this week validates, whatever the day the suite runs. The
landed and built database is a template; each test gets its own copy (``create database ... template``),
so a test can corrupt it freely.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.week_runs import last_complete_week
from collectors.orchestration import dbt_runner as dbt
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.partitions import Partition, list_partitions
from tests.support.simulated import land_simulation

# the marts the validation reads; their parents come with them ("+model")
MARTS = (
    "fct_telemetry_day",
    "fct_telemetry_week",
    "fct_minutes_per_user_daily",
    "fct_minutes_per_user_weekly",
    "fct_channel_reliability_hourly",
    "fct_channel_reliability_daily",
    "fct_channel_reliability_weekly",
    "fct_reliability_hourly",
    "fct_reliability_daily",
    "fct_reliability_weekly",
    "fct_host_metrics_hourly",
    "fct_host_metrics_daily",
    "fct_host_metrics_weekly",
    "fct_server_metrics_daily",
    "fct_event_counts_daily",
)


@dataclass(frozen=True)
class LandedWeek:
    template: str  # database name of the landed, built warehouse
    old_day: dt.date  # the day whose raw partitions are "about to be dropped"
    window_start: dt.datetime
    window_end: dt.datetime
    partitions: tuple[Partition, ...]  # the old day's partition of every raw table


@pytest.fixture(scope="module")
def landed_week(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LandedWeek]:
    window_start = last_complete_week()
    old_day = (window_start - dt.timedelta(days=1)).date()
    config = SimulationConfig(
        start=window_start - dt.timedelta(hours=12),
        end=window_start + dt.timedelta(hours=12),
        seed=11,
        servers=2,
        users=40,
        new_accounts_per_day=6,
        channels=3,
        messages_per_channel_per_hour=6.0,
    )
    name = f"telemetry_gx_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    tmp = tmp_path_factory.mktemp("landed_week")
    try:
        # the old day may lie past the default message retention (7 days) on a Monday
        _, accepted = land_simulation(url, config, tmp / "spool", retention=RetentionDays(message_samples=30))
        assert all(accepted.get(kind) for kind in ("minute_snapshots", "message_samples", "host_minutes"))
        dbt.build(
            " ".join(f"+{mart}" for mart in MARTS),
            config.start,
            config.end,
            database_url=url,
            full_refresh=True,
            data_tests=False,
            target_path=tmp / "dbt",
        )
        with psycopg.connect(url) as conn:
            partitions = tuple(p for table in RAW_TABLES for p in list_partitions(conn, table) if p.day == old_day)
        assert {p.table for p in partitions} == set(RAW_TABLES)
        yield LandedWeek(name, old_day, window_start, window_start + dt.timedelta(days=7), partitions)
    finally:
        local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def week_url(pg_server: local_postgres.PostgresServer, landed_week: LandedWeek) -> Iterator[str]:
    """A private copy of the landed week, free to corrupt."""
    name = f"telemetry_gx_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=landed_week.template)
    yield url
    local_postgres.drop_database(pg_server.url, name)
