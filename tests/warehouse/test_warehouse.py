"""Migrations, partitions and roles of the raw and quality schemas, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from psycopg import errors

from collectors.config import RetentionDays
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions, list_partitions, partitions_older_than


def test_migration_is_idempotent_and_creates_every_raw_table(warehouse_url: str, db: psycopg.Connection) -> None:
    upgrade(warehouse_url)  # already at head: nothing to do, no error
    tables = {
        name
        for (name,) in db.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'raw' and c.relkind = 'p'"
        )
    }
    assert tables == set(RAW_TABLES)
    assert db.execute("select to_regclass('raw.rejects'), to_regclass('quality.ingest_batches')").fetchone() == (
        "raw.rejects",
        "quality.ingest_batches",
    )


def test_partitions_are_created_ahead_and_listed_by_age(db: psycopg.Connection) -> None:
    today = dt.date(2026, 1, 10)
    retention = RetentionDays(message_samples=2)
    created = ensure_partitions(db, retention, ahead_days=1, today=today)
    assert created["message_samples"] == 4  # 8th..11th
    assert ensure_partitions(db, retention, ahead_days=1, today=today)["message_samples"] == 0
    days = [p.day for p in list_partitions(db, "message_samples") if p.day.year == 2026 and p.day.month == 1]
    assert days == [dt.date(2026, 1, d) for d in (8, 9, 10, 11)]
    older = partitions_older_than(db, "message_samples", 1, today=today)
    assert [p.day for p in older if p.day.year == 2026] == [dt.date(2026, 1, 8)]
    assert older[-1].name == "message_samples_p20260108"


def test_partition_bounds_are_utc_days(db: psycopg.Connection) -> None:
    db.execute("select raw.ensure_partitions('host_minutes', '2026-02-01', '2026-02-01')")
    db.execute("set timezone = 'America/New_York'")
    bound = db.execute(
        "select pg_get_expr(c.relpartbound, c.oid) from pg_class c where relname = 'host_minutes_p20260201'"
    ).fetchone()[0]
    assert "2026-01-31 19:00:00-05" in bound and "2026-02-01 19:00:00-05" in bound


def test_unknown_table_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("select raw.ensure_partitions('nope', '2026-01-01', '2026-01-02')")


def test_natural_keys_are_unique(db: psycopg.Connection) -> None:
    row = ("s1", dt.datetime.now(dt.UTC).replace(second=0, microsecond=0))
    insert = (
        "insert into raw.minute_snapshots (server_id, minute, battles_total, battles_lobby, battles_in_progress)"
        " values (%s, %s, 0, 0, 0)"
    )
    db.execute(insert, row)
    with pytest.raises(errors.UniqueViolation):
        db.execute(insert, row)


def test_ingest_role_can_only_insert_and_analyst_only_read_marts(db: psycopg.Connection) -> None:
    now = dt.datetime.now(dt.UTC)
    db.execute("create table marts.example (x int)")
    with db.transaction(force_rollback=True):
        db.execute("set local role telemetry_ingest")
        db.execute(
            "insert into raw.message_samples (message_id, channel_id, receiver_public_key, sent_at)"
            " values ('m', 'c', 'r', %s)",
            (now,),
        )
        for statement in (
            "select count(*) from raw.message_samples",
            "delete from raw.message_samples",
            "truncate raw.message_samples",
            "select count(*) from marts.example",
        ):
            with pytest.raises(errors.InsufficientPrivilege), db.transaction():
                db.execute(statement)
    with db.transaction(force_rollback=True):
        db.execute("set local role telemetry_analyst")
        assert db.execute("select count(*) from marts.example").fetchone() == (0,)
        for statement in ("insert into marts.example values (1)", "select count(*) from raw.message_samples"):
            with pytest.raises(errors.InsufficientPrivilege), db.transaction():
                db.execute(statement)
