"""The weekly backfill through the CeleryExecutor, as production runs it (docker-compose.yml): two
``airflow celery worker`` processes on a Redis broker, the result backend in the metadata database. It builds
the same marts, row for row, as the scheduled runs, which the LocalExecutor module's week equals too.

Cheap by design: the warehouse starts as the scheduled hourly and daily runs left it (``backfill_week``, shared
with the LocalExecutor module), so only the weekly DAG runs (build, reliability, Great Expectations, cleanup).

Which worker takes the next task of a sequential DAG is the broker's choice, so "both workers ran tasks" is made
certain the way an operator drains a worker: once the first task instance names its worker, that worker is told
to stop consuming the queue (Celery's ``cancel_consumer``) and every later task must go to the other one.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import celery
import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.dev.local_airflow import CeleryWorkers
from tests.e2e.conftest import (
    MARTS,
    WEEK_START,
    BackfillWeek,
    ModuleAirflow,
    claimed_redis_database,
    running_airflow,
)
from tests.support.simulated import snapshot

# After the LocalExecutor module (week landed, scheduled runs built) the test took 6.2 min on two cores at a load
# average of 14 (2.5 to boot Airflow, 3.7 for the backfill); run alone it also lands the week and builds the
# scheduled runs, which the default 10 minutes did not cover at that load
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

DAG_ID = "telemetry_weekly"


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with claimed_redis_database() as url:
        yield url


@pytest.fixture(scope="module")
def starting_airflow(
    pg_server: local_postgres.PostgresServer, tmp_path_factory: pytest.TempPathFactory, broker: str
) -> Iterator[Callable[[], ModuleAirflow]]:
    workers = CeleryWorkers(broker, queue=f"e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}", count=2)
    tmp = tmp_path_factory.mktemp("airflow-celery")
    with running_airflow(pg_server, tmp, celery=workers) as up:
        yield up


@pytest.fixture(scope="module")
def airflow(starting_airflow: Callable[[], ModuleAirflow], backfill_week: BackfillWeek) -> ModuleAirflow:
    """The module's Airflow, started before the week is landed and the scheduled runs are built (unless an
    earlier module built them), so that it boots meanwhile; dbt runs in this process one build at a time."""
    backfill_week.scheduled_runs()
    return starting_airflow()


def node_names(app: celery.Celery, workers: list[str], timeout: float = 60) -> dict[str, str]:
    """Each worker's Celery node name (``<name>@<host>``), once all of them answer a ping."""
    deadline = time.monotonic() + timeout
    while True:
        answered = [node for reply in app.control.ping(timeout=2) or [] for node in reply]
        nodes = {worker: node for worker in workers for node in answered if node.startswith(f"{worker}@")}
        if len(nodes) == len(workers):
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"Celery workers {workers} did not all answer within {timeout:.0f} s: {answered}")


def drain_first_worker(
    airflow: ModuleAirflow, app: celery.Celery, nodes: dict[str, str], done: Future[object]
) -> str | None:
    """Wait for the first task instance of the backfill's run to name its worker, then stop that worker consuming
    the queue; the worker drained (None if the run ended first)."""
    assert airflow.celery is not None
    while not done.done():
        for run in airflow.runs(DAG_ID, run_type="backfill"):
            for ti in airflow.task_instances(DAG_ID, run["dag_run_id"]).values():
                if ti.get("hostname") in nodes:
                    app.control.cancel_consumer(airflow.celery.queue, destination=[nodes[ti["hostname"]]], reply=True)
                    return str(ti["hostname"])
        time.sleep(0.5)
    return None


def test_the_weekly_backfill_on_two_celery_workers_equals_the_scheduled_runs(
    airflow: ModuleAirflow, backfill_week: BackfillWeek
) -> None:
    assert airflow.celery is not None
    scheduled = backfill_week.scheduled_runs()
    url = airflow.use_warehouse(scheduled.before_weekly)
    workers = airflow.celery.names()
    app = celery.Celery(broker=airflow.celery.broker_url)
    try:
        nodes = node_names(app, workers)
        done: Future[object] = Future()

        def backfill() -> None:
            try:
                done.set_result(airflow.backfill(DAG_ID, WEEK_START, WEEK_START, max_active_runs=1, timeout=400))
            except BaseException as error:
                done.set_exception(error)

        threading.Thread(target=backfill, name="weekly-backfill", daemon=True).start()
        drained = drain_first_worker(airflow, app, nodes, done)
        states = done.result(timeout=420)
    finally:
        app.close()
    assert states == {WEEK_START: "success"}, states
    (run,) = airflow.runs(DAG_ID, run_type="backfill")
    instances = airflow.task_instances(DAG_ID, run["dag_run_id"])
    assert {ti["state"] for ti in instances.values()} == {"success"}, instances
    by_worker = {worker: sorted(t for t, ti in instances.items() if ti["hostname"] == worker) for worker in workers}
    print(f"drained {drained}; tasks by worker: {by_worker}")
    assert drained in workers
    assert all(by_worker.values()), by_worker  # each worker ran at least one task
    assert sum(map(len, by_worker.values())) == len(instances)  # and no task ran anywhere else
    assert snapshot(url, MARTS) == scheduled.marts
    with psycopg.connect(url) as conn:
        verdict = conn.execute("select bool_and(success), count(*) from quality.validation_runs").fetchone()
    assert verdict[0] is True and verdict[1] > 0
