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


# End-to-end modules that share a session fixture run as one unit, so that it is made once: the backfill modules
# share the landed week they backfill, the run and kill modules the small landed period.
E2E_UNITS = {
    "test_airflow_backfill.py": "e2e-backfill-week",
    "test_celery_backfill.py": "e2e-backfill-week",
    "test_airflow_runs.py": "e2e-landed-week",
    "test_task_kill.py": "e2e-landed-week",
}


def _work_unit(item: pytest.Item) -> str:
    """What one xdist worker runs as a whole: the end-to-end modules by the session fixture they share, the dbt
    modules on the session's built warehouse together (one dbt build of everything, not one per worker), every
    other module by itself (its module fixtures are made once)."""
    path = Path(str(item.path)).relative_to(REPO_ROOT / "tests")
    if path.parts[0] == "e2e":
        return E2E_UNITS.get(path.name, path.as_posix())
    if path.parts[0] == "dbt" and "warehouse" in item.fixturenames:
        return "dbt-warehouse"
    return path.as_posix()


def _start_rank(item: pytest.Item) -> int:
    """Longest work first, so that no long unit starts last: the Airflow end-to-end runs, the dbt warehouse, the
    fault, load, fuzz and slow modules, then the rest."""
    unit = _work_unit(item)
    if unit.startswith("e2e"):
        return 0
    if unit == "dbt-warehouse":
        return 1
    return 2 if any(item.get_closest_marker(m) for m in ("fault", "load", "fuzz", "slow")) else 3


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (``make test``), hand the workers whole modules, longest first."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_work_unit(item)))
    ranks = {}
    for item in items:  # a module's rank is its most urgent test's, so that its tests stay together
        unit = _work_unit(item)
        ranks[unit] = min(ranks.get(unit, 3), _start_rank(item))
    items.sort(key=lambda item: ranks[_work_unit(item)])


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
    """A fresh, migrated warehouse database with partitions from the retention back to 3 days ahead.

    Each test's is a new copy of the template under the same name (one per process): dbt keys its saved parse of
    the project on the database it connects to, and a new name would make every test that runs dbt parse the
    whole project again (5 to 30 s on two cores).
    """
    name = f"telemetry_test_{os.getpid()}"
    url = local_postgres.create_database(
        pg_server.url, name, template=local_postgres.database_name(template_url), drop=True
    )
    yield url
    local_postgres.drop_database(pg_server.url, name)


@pytest.fixture
def db(warehouse_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's warehouse database."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn
