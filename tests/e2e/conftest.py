"""One running Airflow per test module: its metadata database, its services, the warehouse its DAGs build.

Migrating Airflow's metadata database and starting the scheduler, dag-processor, triggerer and api-server takes
30 to 50 s on two cores, so a module starts Airflow once, in a thread while it lands its data (which takes about
as long), and its tests make their runs there through the REST API.

The DAGs build one warehouse database, named once per module (``TELEMETRY_DATABASE_URL`` of the services); each
test recreates it from the template it needs. The name stays the same because dbt parses the whole project
again when the database it connects to changes (6 to 20 s per dbt task on two cores) instead of reusing its
last parse.
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
from dataclasses import dataclass
from pathlib import Path

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.dev.local_airflow import LocalAirflow
from collectors.dev.week_runs import DAGS
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import dbt_vars
from collectors.orchestration.cadences import CADENCES
from collectors.orchestration.process_env import temporary_environment

# nothing is scheduled on its own (catchup would queue every period since the start): the tests make their runs
# as backfills and manual runs, which Airflow creates whatever the start date
FUTURE_START = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).date().isoformat()


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
            shutil.copy2(parsed / "partial_parse.msgpack", artefacts / cadence / "partial_parse.msgpack")


@contextmanager
def running_airflow(
    server: local_postgres.PostgresServer, tmp: Path, **env: str
) -> Iterator[Callable[[], ModuleAirflow]]:
    """Migrate an Airflow home under ``tmp`` and start its services, in a thread; the callable yielded parses dbt
    for the tasks, waits until the services are up and the cadence DAGs served, and returns the Airflow (or
    raises what stopped it)."""
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
        **env,
    }
    warehouse = local_postgres.with_database(server.url, warehouse_name)
    airflow = ModuleAirflow(tmp / "home", meta, warehouse, extra_env=extra, server_url=server.url)
    up: Future[ModuleAirflow] = Future()
    done = threading.Event()

    def serve() -> None:  # the services start and stop in this one thread
        try:
            airflow.migrate()
            with airflow.services():
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
