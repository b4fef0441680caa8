"""A local Airflow for the demo and the end-to-end tests: one home, its services, its CLI.

``LocalAirflow`` writes nothing to ``airflow.cfg``: everything is environment (``AIRFLOW__*``), so
the same settings show up in ``docker-compose.yml``. The metadata database lives on the same
PostgreSQL server as the warehouse (its own database). Services run as child processes with their
logs under ``<home>/logs/``; ``services()`` stops them all on exit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from collectors.config import CHECKOUT

# the checkout's dags/ and plugins/ (this harness runs from a checkout)
REPO_ROOT = CHECKOUT or Path.cwd()
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_STATES = frozenset({"success", "failed"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowCommandError(RuntimeError):
    """An ``airflow`` CLI call failed; the message carries the tail of its output."""


@dataclass
class LocalAirflow:
    """An Airflow home whose metadata database is ``metadata_url`` and whose DAGs build ``warehouse_url``."""

    home: Path
    metadata_url: str  # postgresql://... (a database of its own)
    warehouse_url: str
    api_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The process environment of every Airflow command and service of this home."""
        meta = "postgresql+psycopg2://" + self.metadata_url.split("://", 1)[1]
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "TELEMETRY_DATABASE_URL": self.warehouse_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in this home; raise ``AirflowCommandError`` with its output on failure."""
        done = subprocess.run(
            [str(AIRFLOW_BIN), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            tail = (done.stdout + done.stderr)[-4000:]
            raise AirflowCommandError(f"airflow {' '.join(args)} exited {done.returncode}:\n{tail}")
        return done

    def migrate(self) -> None:
        """Create the metadata database if needed and migrate it (about 4 s on a new one)."""
        self.home.mkdir(parents=True, exist_ok=True)
        server, _, name = self.metadata_url.rpartition("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
        self.airflow("db", "migrate")

    def dags_test(
        self, dag_id: str, logical_date: dt.datetime, conf: dict | None = None
    ) -> subprocess.CompletedProcess:
        """``airflow dags test``: one run in this process tree, no scheduler. Does not raise on a failed run."""
        args = ["dags", "test", dag_id, logical_date.isoformat()]
        if conf:
            args += ["--conf", json.dumps(conf)]
        return self.airflow(*args, check=False)

    def run_states(self, dag_id: str, run_type: str | None = None) -> dict[dt.datetime, str]:
        """State of each run of ``dag_id`` by data interval start (read from the metadata database)."""
        query = "select data_interval_start, state from dag_run where dag_id = %s"
        params: list[object] = [dag_id]
        if run_type:
            query += " and run_type = %s"
            params.append(run_type)
        with psycopg.connect(self.metadata_url) as conn:
            return {start: str(state) for start, state in conn.execute(query, params).fetchall()}

    def task_states(self, dag_id: str, start: dt.datetime) -> dict[str, str]:
        with psycopg.connect(self.metadata_url) as conn:
            rows = conn.execute(
                "select ti.task_id, ti.state from task_instance ti join dag_run r"
                " on r.dag_id = ti.dag_id and r.run_id = ti.run_id"
                " where r.dag_id = %s and r.data_interval_start = %s",
                (dag_id, start),
            ).fetchall()
        return {task: str(state) for task, state in rows}

    @contextmanager
    def services(self, names: Sequence[str] = SERVICES, ready_timeout: float = 120) -> Iterator[LocalAirflow]:
        """Start the services as child processes; stop all of them (SIGTERM, then SIGKILL) on exit."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            for name in names:
                log_file = stack.enter_context((logs / f"{name}.log").open("ab"))
                process = subprocess.Popen(
                    [str(AIRFLOW_BIN), name],
                    env=self.env(),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                stack.callback(_stop, process)
            if "api-server" in names:
                self.wait_ready(ready_timeout)
            yield self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the api-server did not answer on {self.api_url} within {timeout:.0f} s; see {self.home / 'logs'}"
                )
            time.sleep(1)

    def wait_dag_registered(self, dag_ids: Sequence[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has serialized every DAG in ``dag_ids``."""
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.metadata_url) as conn:
                found = {row[0] for row in conn.execute("select dag_id from serialized_dag").fetchall()}
            if set(dag_ids) <= found:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs {sorted(set(dag_ids) - found)} were not parsed within {timeout:.0f} s")
            time.sleep(1)

    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> str:
        """``airflow dags trigger`` (a manual run, logical date now); returns ``run_id``. Needs ``services()``."""
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        self.airflow(*args)
        return run_id

    def wait_run(
        self, dag_id: str, run_id: str, *, timeout: float = 900, progress: Callable[[str], None] | None = None
    ) -> str:
        """Wait until the run ends; return its state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            with psycopg.connect(self.metadata_url) as conn:
                row = conn.execute(
                    "select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id)
                ).fetchone()
            state = str(row[0]) if row else "not created"
            if progress and state != seen:
                progress(state)
                seen = state
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout:.0f} s (state {state})")
            time.sleep(2)

    def backfill(
        self,
        dag_id: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        max_active_runs: int = 2,
        timeout: float = 900,
        progress: Callable[[dict[dt.datetime, str]], None] | None = None,
    ) -> dict[dt.datetime, str]:
        """``airflow backfill create`` for runs whose logical dates fall in [start, end]; wait for them.

        Needs ``services()``. Returns each run's final state by data interval start.
        """
        self.airflow("dags", "unpause", dag_id)
        self.airflow(
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            start.isoformat(),
            "--to-date",
            end.isoformat(),
            "--max-active-runs",
            str(max_active_runs),
            "--reprocess-behavior",
            "completed",
        )
        deadline = time.monotonic() + timeout
        while True:
            states = self.run_states(dag_id, run_type="backfill")
            if progress:
                progress(states)
            if states and all(state in TERMINAL_STATES for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill of {dag_id} not finished after {timeout:.0f} s: {states}")
            time.sleep(2)


def _stop(process: subprocess.Popen, grace: float = 20) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def reset_home(home: Path) -> None:
    """Remove an Airflow home's files (logs, config) so a new run starts clean."""
    shutil.rmtree(home, ignore_errors=True)
