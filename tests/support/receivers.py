"""Receivers for tests: in-process (fast) and as a real subprocess (for signals and kills); login users in the
warehouse roles; the figures the fault, load and fuzz suites report."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.dev.ports import free_port
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient

TOKEN = "test-token-" + "x" * 20
REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = REPO_ROOT / ".state" / "hardening-figures.json"
_FIGURES: list[tuple[str, dict[str, object]]] = []


def report_figures(name: str, **figures: object) -> None:
    """Record the figures of a fault, load or fuzz test: printed at the end of the run (terminal summary) and
    kept in .state/hardening-figures.json (latest run of each test)."""
    _FIGURES.append((name, figures))
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    try:
        stored = json.loads(FIGURES_FILE.read_text()) if FIGURES_FILE.exists() else {}
    except ValueError:
        stored = {}
    stored[name] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **figures}
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(stored, indent=2, sort_keys=True, default=str) + "\n")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault, load and fuzz figures")
    for name, figures in _FIGURES:
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    terminalreporter.write_line(f"(kept in {FIGURES_FILE.relative_to(REPO_ROOT)})")


@pytest.fixture
def receiver(warehouse_url: str) -> Iterator[Receiver]:
    settings = Settings(database_url=warehouse_url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    running = Receiver(settings).start()
    yield running
    running.stop(grace=5)


@pytest.fixture
def client(receiver: Receiver, tmp_path: Path) -> Iterator[IngestClient]:
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=tmp_path / "spool", attempts=2) as c:
        yield c


def wait_serving(target: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver at {target} did not become healthy")
            time.sleep(0.1)


@pytest.fixture
def receiver_process(warehouse_url: str) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start ``telemetry-receiver`` as a real process: returns (process, target). Stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(port: int | None = None, **env: str) -> tuple[subprocess.Popen, str]:
        port = port or free_port()
        environment = {
            **os.environ,
            "TELEMETRY_DATABASE_URL": warehouse_url,
            "TELEMETRY_INGEST_TOKENS": TOKEN,
            "TELEMETRY_METRICS_PORT": str(free_port()),
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "collectors.receiver.cli", "--listen", f"127.0.0.1:{port}"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        wait_serving(f"127.0.0.1:{port}")
        return process, f"127.0.0.1:{port}"

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.fixture
def login_in_role(pg_server: local_postgres.PostgresServer, warehouse_url: str) -> Iterator[Callable[[str], str]]:
    """``login_in_role("telemetry_ingest")``: a fresh login user in that group role; returns the warehouse URL as
    that user. Users are cluster-wide, so each is named uniquely and dropped at teardown."""
    made: list[str] = []

    def make(role: str) -> str:
        user, password = f"{role}_t{os.getpid()}_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create role {} login password {} in role {}").format(
                    sql.Identifier(user), sql.Literal(password), sql.Identifier(role)
                )
            )
        made.append(user)
        parts = urlsplit(warehouse_url)
        netloc = f"{user}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    yield make
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        for user in made:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s and pid <> pg_backend_pid()",
                (user,),
            )
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(user)))
