"""Database access shared by the receiver, the loaders and the maintenance tasks."""

from __future__ import annotations

import psycopg

RAW_TABLES: tuple[str, ...] = (
    "minute_snapshots",
    "message_samples",
    "host_minutes",
    "product_events",
    "accounts_created",
)


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
