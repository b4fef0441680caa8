"""A local Airflow for the demo and the end-to-end tests: one home, its services, its REST API and CLI.

``LocalAirflow`` writes nothing to ``airflow.cfg``: everything is environment (``AIRFLOW__*``), so
the same settings show up in ``docker-compose.yml``. The metadata database lives on the same
PostgreSQL server as the warehouse (its own database). Services run as child processes with their
logs under ``<home>/logs/``; ``services()`` stops them all on exit.

Runs, task instances and DAGs are read and triggered through Airflow's public REST API (``/api/v2``) of
the running api-server, never from the metadata tables, which are no public interface in Airflow 3. The
simple auth manager makes everyone admin here (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS``), and in
that mode hands out a token on ``GET /auth/token`` without credentials.

With ``celery=CeleryWorkers(...)`` the home runs the CeleryExecutor instead of the LocalExecutor, as
production does (``docker-compose.yml``): ``services()`` adds that many ``airflow celery worker`` processes, the
broker is the Redis URL given and the result backend the metadata database (``db+postgresql://``). The
settings both share are ``CELERY_SETTINGS``, which ``tests/test_compose.py`` holds compose's to.

Why not ``airflow standalone``: it starts the same four services, but always all of them (the report page's
test wants the api-server alone), in one process whose logs interleave, and tells "ready" by a banner on
its output after polling the jobs table; here each service is a process with its own log, readiness is
the api-server's health endpoint and the DAGs being served, and stopping is per process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from collectors.config import CHECKOUT
from collectors.dev.ports import free_port

# the checkout's dags/ and plugins/ (this harness runs from a checkout)
REPO_ROOT = CHECKOUT or Path.cwd()
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_STATES = frozenset({"success", "failed"})

# The Celery settings production runs with (docker-compose.yml's x-airflow-common environment sets the same values,
# which tests/test_compose.py checks); the broker, the result backend and the queue are per deployment.
# One task at a time per worker process, taken from the broker only when a process is free (a dbt build holds
# a core for minutes: prefetching would queue a task behind it while another worker idles); acknowledged when
# it ends, so a worker lost mid-task hands the task to another.
CELERY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
}
# what names a task instance's ``hostname`` (``[core] hostname_callable``) in the workers started here: several
# workers on one machine would otherwise all report its name
WORKER_NAME_VARIABLE = "TELEMETRY_AIRFLOW_WORKER_NAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the local Celery workers: the worker's name, else the machine's."""
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


def celery_result_backend(metadata_url: str) -> str:
    """The Celery result backend in the metadata database, as compose names it: ``db+postgresql://...``."""
    return "db+postgresql://" + metadata_url.split("://", 1)[1]


@dataclass(frozen=True)
class CeleryWorkers:
    """Run the CeleryExecutor: ``count`` workers (each ``CELERY_SETTINGS`` processes) on ``queue`` of the broker.

    ``broker_url`` is ``redis://host:port/<db>``; a queue and a database of its own keep parallel homes apart.
    """

    broker_url: str
    queue: str = "default"
    count: int = 2

    def names(self) -> list[str]:
        """The workers' names: their Celery node names are ``<name>@<host>``, their task instances' hostname."""
        return [f"{self.queue}-worker{n}" for n in range(1, self.count + 1)]


class AirflowCommandError(RuntimeError):
    """An ``airflow`` CLI call failed; the message carries the tail of its output."""


class AirflowApiError(RuntimeError):
    """The REST API refused a call: ``status`` is the HTTP status, ``detail`` what Airflow said."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        super().__init__(f"{method} {path}: {status} {detail}")
        self.status = status
        self.detail = detail


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class LocalAirflow:
    """An Airflow home whose metadata database is ``metadata_url`` and whose DAGs build ``warehouse_url``."""

    home: Path
    metadata_url: str  # postgresql://... (a database of its own)
    warehouse_url: str
    api_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    celery: CeleryWorkers | None = None  # None: the LocalExecutor
    _token: str | None = field(default=None, init=False, repr=False)

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
        if self.celery is not None:
            env.update(CELERY_SETTINGS)
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": celery_result_backend(self.metadata_url),
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery.queue,
                }
            )
        env.update(self.extra_env)
        return env

    def _worker_commands(self) -> list[tuple[str, list[str], dict[str, str]]]:
        """Each Celery worker's log name, command and environment."""
        if self.celery is None:
            return []
        workers = []
        for name in self.celery.names():
            env = self.env()
            env[WORKER_NAME_VARIABLE] = name
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{__name__}.worker_hostname"
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())  # one machine, several log servers
            command = [str(AIRFLOW_BIN), "celery", "worker", "--celery-hostname", f"{name}@%h"]
            command += ["--pid", str(self.home / f"{name}.pid")]  # one pid file each, not airflow-worker.pid
            workers.append((name, command, env))
        return workers

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
        """Create the metadata database if needed and migrate it (about 7 s on two cores, new or not)."""
        self.home.mkdir(parents=True, exist_ok=True)
        server, _, name = self.metadata_url.rpartition("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
        self.airflow("db", "migrate")

    @contextmanager
    def services(self, names: Sequence[str] = SERVICES, ready_timeout: float = 120) -> Iterator[LocalAirflow]:
        """Start the services as child processes (and, with ``celery``, its workers once the scheduler is among
        them); stop all of them (SIGTERM, then SIGKILL) on exit."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        commands = [(name, [str(AIRFLOW_BIN), name], self.env()) for name in names]
        if "scheduler" in names:
            commands += self._worker_commands()
        with ExitStack() as stack:
            processes: list[subprocess.Popen] = []
            stack.callback(_stop, processes)
            for name, command, env in commands:
                log_file = stack.enter_context((logs / f"{name}.log").open("ab"))
                processes.append(
                    subprocess.Popen(
                        command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
            if "api-server" in names:
                self.wait_ready(ready_timeout)
                if "scheduler" in names:  # tasks will run
                    self._warm_execution_api(ready_timeout)
            # a worker that cannot start (a broken Celery install, the broker away) exits within seconds, and
            # its tasks would only time out in the queue
            for (name, *_), process in zip(commands, processes, strict=True):
                if process.poll() is not None and name not in names:
                    raise AirflowCommandError(f"{name} exited {process.returncode}; see {logs / f'{name}.log'}")
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

    def _warm_execution_api(self, timeout: float) -> None:
        # The task execution API (a Cadwyn app) builds its versioned routes on its first request, 8 to 13 s on two
        # cores; the first task's first call would give up after 5 s and retry, so the first task would pay it.
        try:
            with urllib.request.urlopen(f"{self.api_url}/execution/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # any answer means the routes are built

    def token(self) -> str:
        """A JWT for the REST API: with every user an admin, ``GET /auth/token`` gives one without credentials."""
        if self._token is None:
            request = urllib.request.Request(f"{self.api_url}/auth/token", headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                self._token = str(json.loads(reply.read())["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One call of the REST API (``/api/v2/<path>``); its JSON answer. Raises ``AirflowApiError``."""
        url = f"{self.api_url}/api/v2/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Accept", "application/json")
            request.add_header("Content-Type", "application/json")
            request.add_header("Authorization", f"Bearer {self.token()}")
            try:
                with urllib.request.urlopen(request, timeout=60) as reply:
                    answer = reply.read()
                    return json.loads(answer) if answer else None
            except urllib.error.HTTPError as error:
                text = error.read().decode(errors="replace")
                if error.code == 401 and attempt == 0:  # an expired token: take a new one, once
                    self._token = None
                    continue
                try:
                    detail = json.loads(text).get("detail", text)
                except (ValueError, AttributeError):
                    detail = text
                raise AirflowApiError(method, path, error.code, detail) from None
        raise AssertionError("unreachable")

    def _paged(self, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", path, limit=100, offset=len(found), **query)
            found += page[key]
            if not page[key] or len(found) >= page["total_entries"]:
                return found

    def wait_dag_registered(self, dag_ids: Sequence[str], timeout: float = 120) -> None:
        """Wait until the api-server serves every DAG in ``dag_ids`` (parsed and serialized by the dag-processor)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for dag_id in dag_ids:
                try:
                    self.api("GET", f"dags/{dag_id}/details")
                except AirflowApiError as error:
                    if error.status != 404:
                        raise
                    missing.append(dag_id)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs {missing} were not parsed within {timeout:.0f} s")
            time.sleep(1)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def trigger(
        self, dag_id: str, run_id: str, conf: dict | None = None, *, logical_date: dt.datetime | None = None
    ) -> str:
        """Trigger a manual run; returns ``run_id``. Without ``logical_date`` the run has no data interval, so it
        needs ``window_start``/``window_end`` in ``conf``; with one, its data interval is the period that ends at
        ``logical_date`` (the timetable's manual interval). Raises ``AirflowApiError`` (status 400) when Airflow
        refuses the conf against the DAG's params. Needs ``services()``."""
        body = {
            "dag_run_id": run_id,
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": conf or {},
        }
        self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return run_id

    def clear(self, dag_id: str, run_id: str) -> None:
        """Run a finished run again, every task of it (what "Clear" does in the UI)."""
        self.api("POST", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/clear", {"dry_run": False})

    def runs(self, dag_id: str, run_type: str | None = None, **query: Any) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` (optionally of one run type) as the REST API describes it."""
        if run_type:
            query["run_type"] = run_type
        return self._paged(f"dags/{dag_id}/dagRuns", "dag_runs", **query)

    def run_states(self, dag_id: str, run_type: str | None = None, **query: Any) -> dict[dt.datetime, str]:
        """State of each run of ``dag_id`` by data interval start."""
        return {_instant(run["data_interval_start"]): run["state"] for run in self.runs(dag_id, run_type, **query)}

    def run_state(self, dag_id: str, run_id: str) -> str:
        try:
            return str(self.api("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")["state"])
        except AirflowApiError as error:
            if error.status == 404:
                return "not created"
            raise

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Each task instance of one run by task id (state, try_number, start and end ...)."""
        path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return {ti["task_id"]: ti for ti in self._paged(path, "task_instances")}

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {task: str(ti["state"]) for task, ti in self.task_instances(dag_id, run_id).items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The log of one try of a task, as text (one line per log event)."""
        path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        lines = []
        for line in self.api("GET", path, full_content="true")["content"]:
            if isinstance(line, str):
                lines.append(line)
                continue
            lines.append(str(line.get("event", "")))
            lines += [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in line.get("error_detail") or ()]
        return "\n".join(lines)

    def wait_run(
        self, dag_id: str, run_id: str, *, timeout: float = 900, progress: Callable[[str], None] | None = None
    ) -> str:
        """Wait until the run ends; return its state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            state = self.run_state(dag_id, run_id)
            if progress and state != seen:
                progress(state)
                seen = state
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout:.0f} s (state {state})")
            time.sleep(1)

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
        """A backfill of the runs whose logical dates fall in [start, end]; wait for them.

        Needs ``services()``. Returns each run's final state by data interval start. A backfill of the same DAG
        still open is waited for first.
        """
        self.unpause(dag_id)
        self._wait_backfills_complete(dag_id, timeout)
        self.api(
            "POST",
            "backfills",
            {
                "dag_id": dag_id,
                "from_date": start.isoformat(),
                "to_date": end.isoformat(),
                "max_active_runs": max_active_runs,
                "reprocess_behavior": "completed",
            },
        )
        deadline = time.monotonic() + timeout
        window = {"logical_date_gte": start.isoformat(), "logical_date_lte": end.isoformat()}
        while True:
            states = self.run_states(dag_id, run_type="backfill", **window)
            if progress:
                progress(states)
            # every run of a backfill exists once it is created; the scheduler marks the backfill complete later
            if states and all(state in TERMINAL_STATES for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill of {dag_id} not finished after {timeout:.0f} s: {states}")
            time.sleep(2)

    def _wait_backfills_complete(self, dag_id: str, timeout: float) -> None:
        # Airflow refuses a second open backfill of a DAG (409), and the scheduler marks a backfill complete only
        # on a 30-s timer once its runs are finished. Cancelling it instead would leave it paused, and the
        # scheduler starts no queued run of a paused backfill, so a run of it cleared later would never start.
        deadline = time.monotonic() + timeout
        while True:
            backfills = self._paged("backfills", "backfills", dag_id=dag_id)
            open_ids = [backfill["id"] for backfill in backfills if backfill["completed_at"] is None]
            if not open_ids:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfills {open_ids} of {dag_id} still open after {timeout:.0f} s")
            time.sleep(1)


def _stop(processes: Sequence[subprocess.Popen], grace: float = 20) -> None:
    """SIGTERM to every process group at once (each service takes seconds to drain), SIGKILL to what outlives
    the grace."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def reset_home(home: Path) -> None:
    """Remove an Airflow home's files (logs, config) so a new run starts clean."""
    shutil.rmtree(home, ignore_errors=True)
