"""Database access shared by the receiver, the loaders and the maintenance tasks."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from collectors.ingest.registry import TABLE_NAMES

log = logging.getLogger(__name__)

RAW_TABLES: tuple[str, ...] = TABLE_NAMES  # the raw tables (collectors.ingest.registry)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection with a short connect timeout and UTC session time zone."""
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, options="-c timezone=UTC")


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy (alembic) with the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def dbt_env(url: str) -> dict[str, str]:
    """Environment for ``dbt_project/profiles.yml``, derived from the one database URL.

    dbt's postgres profile wants host, port, user, password and database apart;
    they all come from ``TELEMETRY_DATABASE_URL`` through this function.
    """
    info = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "TELEMETRY_DB_HOST": str(info.get("host") or "127.0.0.1"),
        "TELEMETRY_DB_PORT": str(info.get("port") or 5432),
        "TELEMETRY_DB_USER": str(info.get("user") or "postgres"),
        "TELEMETRY_DB_PASSWORD": str(info.get("password") or ""),
        "TELEMETRY_DB_NAME": str(info.get("dbname") or "postgres"),
    }


@contextmanager
def advisory_lock(url: str, name: str) -> Iterator[None]:
    """Hold a session-level PostgreSQL advisory lock named ``name`` on ``url``'s database.

    Every process that builds the marts takes the same lock, so Airflow runs of any DAG, backfills
    and manual dbt calls never rebuild the same views or windows at the same time. A crashed holder
    releases it with its connection.
    """
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connect(url, autocommit=True) as conn:
        started = time.monotonic()
        if not conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            log.info("waiting for the %r lock held by another process", name)
            conn.execute("select pg_advisory_lock(%s)", (key,))
            log.info("got the %r lock after %.1f s", name, time.monotonic() - started)
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (key,))
