"""Fixtures shared by every test: a real PostgreSQL and migrated warehouse databases.

The server is the one ``TELEMETRY_DATABASE_URL`` names, else the local one on
127.0.0.1:5432 (started when installed but down), else an embedded ``pgserver``.
A template database is migrated once per session (partitions included); each
test that asks for ``warehouse_url`` gets a fresh copy of it. Names carry the
process id so that several test runs can share one server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collectors.config import RetentionDays
from collectors.dev import local_postgres
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions

REPO_ROOT = Path(__file__).resolve().parents[1]

# Airflow imported by the tests reads a throwaway home, never ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# Every receiver a test starts (in process or as a CLI) serves HTTP too, on a port of its own: the default 8080
# would be taken by the first.
os.environ.setdefault("TELEMETRY_HTTP_LISTEN", "127.0.0.1:0")

# Fixtures shared across the suite's folders (real receivers, the landed week of the orchestration tests).
pytest_plugins = ["tests.support.receivers", "tests.support.landed_week"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[local_postgres.PostgresServer]:
    """The suite's PostgreSQL: ``TELEMETRY_TEST_DATABASE_URL`` if set; else a scratch cluster of its own with
    fsync off when PostgreSQL's programs are installed (every test creates and drops databases, and a drop on a
    durable server checkpoints: 1.6 s against 0.1 s here); else the server ``find_server`` finds."""
    configured = os.environ.get("TELEMETRY_TEST_DATABASE_URL")
    if configured:
        yield local_postgres.PostgresServer(url=configured, origin="configured")
        return
    try:
        cluster = local_postgres.ScratchCluster(durable=False).start()
    except (FileNotFoundError, PermissionError, subprocess.CalledProcessError) as why:
        print(f"no scratch PostgreSQL cluster ({why}); using the shared server", file=sys.stderr)
        server = local_postgres.find_server(REPO_ROOT / ".state")
        yield server  # an embedded server stops when its handle is released
        return
    try:
        yield local_postgres.PostgresServer(url=cluster.url, origin="scratch")
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def template_url(pg_server: local_postgres.PostgresServer) -> Iterator[str]:
    name = f"telemetry_test_template_{os.getpid()}"
    url = local_postgres.create_database(pg_server.url, name, drop=True)
    upgrade(url)
    with psycopg.connect(url) as conn:
        ensure_partitions(conn, RetentionDays(), ahead_days=3)
    yield url
    local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def warehouse_url(pg_server: local_postgres.PostgresServer, template_url: str) -> Iterator[str]:
    """A fresh, migrated warehouse database with partitions from the retention back to 3 days ahead."""
    name = f"telemetry_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    yield url
    local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def db(warehouse_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's warehouse database."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn
