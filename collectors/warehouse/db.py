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
