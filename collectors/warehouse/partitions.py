"""Daily partitions of the raw tables: create them ahead, list the expired ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from collectors.config import RetentionDays
from collectors.warehouse.db import RAW_TABLES


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    day: dt.date


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def ensure_partitions(
    conn: psycopg.Connection,
    retention: RetentionDays,
    *,
    ahead_days: int,
    today: dt.date | None = None,
    back_days: int | None = None,
) -> dict[str, int]:
    """Create the daily partitions every raw table needs, from its retention back to ``ahead_days`` ahead.

    ``back_days`` overrides the per-table retention (e.g. to replay an older history).
    Returns how many partitions were created per table.
    """
    today = today or utc_today()
    created: dict[str, int] = {}
    with conn.cursor() as cur:
        for table in RAW_TABLES:
            back = retention.for_table(table) if back_days is None else back_days
            cur.execute(
                "select raw.ensure_partitions(%s, %s, %s)",
                (table, today - dt.timedelta(days=back), today + dt.timedelta(days=ahead_days)),
            )
            created[table] = cur.fetchone()[0]
    conn.commit()
    return created


def list_partitions(conn: psycopg.Connection, table: str) -> list[Partition]:
    with conn.cursor() as cur:
        cur.execute("select partition_name, day from raw.partitions(%s)", (table,))
        return [Partition(table, name, day) for name, day in cur.fetchall()]


def partitions_older_than(
    conn: psycopg.Connection, table: str, days: int, *, today: dt.date | None = None
) -> list[Partition]:
    """Partitions of ``table`` whose whole day lies more than ``days`` days before ``today``."""
    with conn.cursor() as cur:
        cur.execute(
            "select partition_name, day from raw.partitions_older_than(%s, %s, %s)",
            (table, days, today or utc_today()),
        )
        return [Partition(table, name, day) for name, day in cur.fetchall()]
