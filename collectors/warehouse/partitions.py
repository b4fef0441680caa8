"""Daily partitions of the raw tables: create them ahead, list the expired ones, list and reattach the detached
ones (the weekly cleanup detaches, ``collectors.orchestration.cleanup``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
from psycopg import sql

from collectors.config import RetentionDays
from collectors.warehouse.db import RAW_TABLES


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    day: dt.date


DETACHED_SCHEMA = "raw_detached"  # where detached partitions wait out their grace period, read by nothing


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A UTC day's [start, end): a daily partition's bounds."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return start, start + dt.timedelta(days=1)


def raw_table(name: str) -> sql.Identifier:
    return sql.Identifier("raw", name)


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


@dataclass(frozen=True)
class Detached:
    partition: Partition
    drop_after: dt.datetime | None  # None: detached by hand, outside the cleanup; never dropped by it


def detached_partitions(conn: psycopg.Connection) -> list[Detached]:
    """The tables in ``raw_detached``, oldest day first, each with the drop_after of its last detachment."""
    rows = conn.execute(
        """
        select c.relname::text, (
            select l.drop_after from quality.cleanup_log as l
            where l.partition_name = c.relname and l.action = 'detached'
            order by l.cleanup_id desc limit 1
        )
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = %s and c.relkind = 'r'
        """,
        (DETACHED_SCHEMA,),
    ).fetchall()
    found = [Detached(partition_of(name), drop_after) for name, drop_after in rows]
    return sorted(found, key=lambda d: (d.partition.day, d.partition.name))


class ReattachError(Exception):
    """A detached partition that cannot go back: the message says why and what to do."""


def reattach(conn: psycopg.Connection, name: str) -> Partition:
    """Put the detached partition ``name`` back into its raw table, whole, and log it. An empty partition that
    was created for the same day in the meantime is replaced; one holding rows is refused."""
    partition = partition_of(name)
    with conn.transaction():
        conn.execute(sql.SQL("lock table {} in access exclusive mode").format(raw_table(partition.table)))
        if name not in {d.partition.name for d in detached_partitions(conn)}:
            raise ReattachError(f"raw_detached.{name} does not exist; `telemetry-db partitions detached` lists them")
        if conn.execute("select to_regclass(%s)", (f"raw.{name}",)).fetchone()[0] is not None:
            if conn.execute(sql.SQL("select exists (select from {})").format(raw_table(name))).fetchone()[0]:
                raise ReattachError(
                    f"raw.{name} exists again and holds rows; move them into raw_detached.{name} or delete them, "
                    "then reattach"
                )
            conn.execute(sql.SQL("drop table {}").format(raw_table(name)))  # made empty by a later partition run
        start, end = day_bounds(partition.day)
        conn.execute(sql.SQL("alter table {} set schema raw").format(sql.Identifier(DETACHED_SCHEMA, name)))
        conn.execute(
            sql.SQL("alter table {} attach partition {} for values from ({}) to ({})").format(
                raw_table(partition.table), raw_table(name), sql.Literal(start), sql.Literal(end)
            )
        )
        log_cleanup(conn, partition, "reattached", "put back by hand (telemetry-db partitions reattach)", None, None)
    return partition


def partition_of(name: str) -> Partition:
    """The partition a table name ``<raw table>_pYYYYMMDD`` (raw.ensure_partitions' names) stands for."""
    table, _, day = name.rpartition("_p")
    if table not in RAW_TABLES or len(day) != 8 or not day.isdigit():
        raise ReattachError(f"{name} is not a raw partition's name (<raw table>_pYYYYMMDD)")
    return Partition(table, name, dt.datetime.strptime(day, "%Y%m%d").date())


def log_cleanup(
    conn: psycopg.Connection,
    partition: Partition,
    action: str,
    reason: str,
    dag_id: str | None,
    run_id: str | None,
    drop_after: dt.datetime | None = None,
) -> None:
    conn.execute(
        "insert into quality.cleanup_log"
        " (dag_id, run_id, table_name, partition_name, day, action, reason, drop_after)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (dag_id, run_id, partition.table, partition.name, partition.day, action, reason, drop_after),
    )
