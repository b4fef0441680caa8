"""One running Airflow per test module: its metadata database, its services, the warehouse its DAGs build.

Migrating Airflow's metadata database and starting the scheduler, dag-processor and api-server takes 30 to 50 s
on two cores, so a module starts Airflow once, in a thread while it lands its data (which takes about
as long), and its tests make their runs there through the REST API.

The DAGs build one warehouse database, named once per module (``TELEMETRY_DATABASE_URL`` of the services); each
test recreates it from the template it needs. The name stays the same because dbt parses the whole project
again when the database it connects to changes (6 to 20 s per dbt task on two cores) instead of reusing its
last parse.

The backfill modules share one landed week (``backfill_week``, a session fixture): the LocalExecutor module runs
the three DAGs over it, the CeleryExecutor module only the weekly one, from a copy of the warehouse as the
scheduled hourly and daily runs left it; both compare with the marts the scheduled runs build, computed once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis

from collectors.config import RetentionDays, Settings
from collectors.dev import local_postgres
from collectors.dev.local_airflow import SERVICES, CeleryWorkers, LocalAirflow
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.week_runs import DAGS, last_complete_week
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import dbt_vars
from collectors.orchestration.cadences import CADENCES
from collectors.orchestration.process_env import temporary_environment
from tests.support.simulated import DAILY_MARTS, HOURLY_MARTS, land_simulation, snapshot

# nothing is scheduled on its own (catchup would queue every period since the start): the tests make their runs
# as backfills and manual runs, which Airflow creates whatever the start date
FUTURE_START = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).date().isoformat()
# Every run here is of a past window and waits no reliability lag (the last day's would wait until tomorrow), so
# no task defers and no triggerer is started; the dag-processor parses each DAG file once, as the files do not
# change while a module runs (its default re-parses every file every 30 s, for nothing here).
E2E_SERVICES = tuple(name for name in SERVICES if name != "triggerer")
E2E_ENV = {"TELEMETRY_RELIABILITY_LAG_WINDOWS": "0", "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}


@dataclass
class ModuleAirflow(LocalAirflow):
    server_url: str = ""

    def use_warehouse(self, template: str) -> str:
        """Recreate the DAGs' warehouse database as a copy of the database ``template``; its URL."""
        name = local_postgres.database_name(self.warehouse_url)
        return local_postgres.create_database(self.server_url, name, template=template, drop=True)

    def parse_dbt_for_the_tasks(self) -> None:
        """Leave dbt's parse of the project where every cadence's dbt tasks look for it.

        Each cadence keeps dbt's target directory, and with it the saved parse, in
        ``<artefacts>/target/<cadence>`` (``collectors.orchestration.builds``), so the first dbt task of each
        cadence would parse the whole project (6 to 20 s on two cores). The saved parse depends on the database,
        the vars and the project, not on the directory: one parse here, with the tasks' database and vars, does
        for all three. Should that stop being so, the tasks parse again themselves, as before.
        """
        artefacts = Path(self.extra_env["TELEMETRY_ARTEFACTS_DIR"]) / "target"
        with temporary_environment(self.extra_env):  # the tasks' settings decide the vars
            tasks_vars = dbt_vars(Settings())
        args = ["parse", "--vars", json.dumps(tasks_vars, sort_keys=True)]
        parsed = dbt.invoke(args, database_url=self.warehouse_url, target_path=artefacts / "parse").target_path
        for cadence in CADENCES:
            (artefacts / cadence).mkdir(parents=True, exist_ok=True)
            shutil.copy2(parsed / dbt.PARTIAL_PARSE_FILE, artefacts / cadence / dbt.PARTIAL_PARSE_FILE)


@contextmanager
def running_airflow(
    server: local_postgres.PostgresServer, tmp: Path, *, celery: CeleryWorkers | None = None, **env: str
) -> Iterator[Callable[[], ModuleAirflow]]:
    """Migrate an Airflow home under ``tmp`` and start its services (with ``celery``: the CeleryExecutor and its
    workers), in a thread; the callable yielded parses dbt for the tasks, waits until the services are up and the
    cadence DAGs served, and returns the Airflow (or raises what stopped it)."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    meta_name, warehouse_name = f"airflow_e2e_{suffix}", f"telemetry_e2e_{suffix}"
    meta = local_postgres.create_database(server.url, meta_name)
    extra = {
        "TELEMETRY_ARTEFACTS_DIR": str(tmp / "artefacts"),
        "TELEMETRY_GX_DIR": str(tmp / "gx"),
        "TELEMETRY_SCHEDULE_START": FUTURE_START,
        # paused until a test runs one: the maintenance DAG (never run here) would migrate the warehouse and
        # add partitions while a test counts them
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        **E2E_ENV,
        **env,
    }
    warehouse = local_postgres.with_database(server.url, warehouse_name)
    airflow = ModuleAirflow(tmp / "home", meta, warehouse, extra_env=extra, celery=celery, server_url=server.url)
    up: Future[ModuleAirflow] = Future()
    done = threading.Event()

    def serve() -> None:  # the services start and stop in this one thread
        try:
            airflow.migrate()
            with airflow.services(E2E_SERVICES):
                airflow.wait_dag_registered(DAGS)
                up.set_result(airflow)
                done.wait()
        except BaseException as error:
            if up.done():
                raise
            up.set_exception(error)

    def ready() -> ModuleAirflow:
        airflow.parse_dbt_for_the_tasks()  # while the services may still be starting
        return up.result()

    thread = threading.Thread(target=serve, name="airflow-services", daemon=True)
    thread.start()
    try:
        yield ready
    finally:
        done.set()
        thread.join()
        for name in (meta_name, warehouse_name):
            local_postgres.drop_database(server.url, name)


REDIS_URL = "redis://127.0.0.1:6379"
_CLAIM_KEY = "telemetry-e2e:claimed-by"


@contextmanager
def claimed_redis_database(url: str = REDIS_URL) -> Iterator[str]:
    """A Redis database no one else uses (``redis://host:port/<db>``), emptied afterwards.

    A database is taken by setting a claim key in it only if absent, and only if nothing else is there, so
    parallel test runs each get their own; the claim expires after an hour should a run die holding it.
    """
    try:
        redis.Redis.from_url(url, socket_timeout=3).ping()
    except redis.RedisError as error:
        pytest.fail(f"no Redis at {url} ({error}): start one with `redis-server --daemonize yes` (.ci/run does)")
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for db in range(1, 16):  # 0 is left to whatever else uses this Redis; 16 databases by default
        client = redis.Redis.from_url(f"{url}/{db}")
        try:
            if not client.set(_CLAIM_KEY, token, nx=True, ex=3600):
                continue
        except redis.ResponseError:  # fewer databases configured
            break
        if client.dbsize() > 1:  # used without a claim: not ours to flush
            client.delete(_CLAIM_KEY)
            continue
        try:
            yield f"{url}/{db}"
        finally:
            client.flushdb()
            client.close()
        return
    pytest.fail(f"every database of the Redis at {url} is in use")


WEEK_START = last_complete_week()
WEEK_END = WEEK_START + dt.timedelta(days=7)
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
MARTS = HOURLY_MARTS + DAILY_MARTS + WEEKLY_MARTS


@dataclass(frozen=True)
class ScheduledRuns:
    """What the scheduled runs build from the landed week: the warehouse before the weekly run (a template
    database's name) and every mart after it (``snapshot``)."""

    before_weekly: str
    marts: dict[str, list[str]]


@dataclass
class BackfillWeek:
    """The last complete week, simulated at a small scale and landed (nothing built) in the template database
    ``landed``; ``scheduled_runs()`` builds, once, what the scheduled runs would from it, below Airflow."""

    server_url: str
    landed: str
    dbt_target: Path
    _built: Future[ScheduledRuns] | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def databases(self) -> tuple[str, ...]:
        return self.landed, f"{self.landed}_scheduled", f"{self.landed}_before_weekly"

    def start_scheduled_runs(self) -> None:
        """Start building the scheduled runs' result in a thread (this process is then free to poll Airflow)."""
        with self._lock:
            if self._built is None:
                self._built = Future()
                threading.Thread(target=self._build, name="scheduled-runs", daemon=True).start()

    def scheduled_runs(self) -> ScheduledRuns:
        self.start_scheduled_runs()
        assert self._built is not None
        return self._built.result()

    def _build(self) -> None:
        assert self._built is not None
        try:
            self._built.set_result(self._scheduled_runs())
        except BaseException as error:
            self._built.set_exception(error)

    def _scheduled_runs(self) -> ScheduledRuns:
        """The hourly range in one call (equal to one build per hour: tests/dbt/test_week_hour_by_hour.py), then
        each day, a copy of the database, then the week."""
        _, scheduled, before_weekly = self.databases
        url = local_postgres.create_database(self.server_url, scheduled, template=self.landed, drop=True)

        def build(select: str, start: dt.datetime, end: dt.datetime) -> None:
            dbt.build(select, start, end, database_url=url, data_tests=False, target_path=self.dbt_target)

        build("+tag:hourly", WEEK_START, WEEK_END)
        for day in range(7):
            build("+tag:daily", WEEK_START + dt.timedelta(days=day), WEEK_START + dt.timedelta(days=day + 1))
        with psycopg.connect(self.server_url, autocommit=True) as conn:  # a template has no sessions
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (scheduled,))
        local_postgres.create_database(self.server_url, before_weekly, template=scheduled, drop=True)
        build("+tag:weekly", WEEK_START, WEEK_END)
        return ScheduledRuns(before_weekly, snapshot(url, MARTS))


@pytest.fixture(scope="session")
def backfill_week(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackfillWeek]:
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
    week = BackfillWeek(pg_server.url, name, tmp_path_factory.mktemp("scheduled-dbt"))
    try:
        _, accepted = land_simulation(
            url, config, tmp_path_factory.mktemp("spool"), retention=RetentionDays(message_samples=30)
        )
        assert all(accepted.get(kind) for kind in ("minute_snapshots", "message_samples", "product_events"))
        yield week
    finally:
        if week._built is not None:
            week._built.exception()  # the build finished before its databases go
        for database in week.databases:
            local_postgres.drop_database(pg_server.url, database)
