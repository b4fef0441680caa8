"""raw.rejects retention: the weekly cleanup deletes rejects older than TELEMETRY_RETENTION_REJECTS days and keeps
a count per day, source and reason in quality.rejects_daily (a real migrated warehouse, no Airflow)."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

import psycopg
import pydantic
import pytest

from collectors.config import RetentionDays
from collectors.orchestration.cleanup import prune_rejects, rejects_cutoff

TODAY = dt.datetime.now(dt.UTC).date()
RETENTION = 30


def at(days_ago: int, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(hour), dt.UTC)


def reject(conn: psycopg.Connection, source: str, reason: str, rejected_at: dt.datetime, size: int = 10) -> None:
    conn.execute(
        "insert into raw.rejects (source, reason, record, record_bytes, rejected_at) values (%s, %s, %s, %s, %s)",
        (source, reason, b"x" * min(size, 4), size, rejected_at),
    )


def daily(conn: psycopg.Connection) -> dict[tuple[dt.date, str, str], tuple[int, int]]:
    rows = conn.execute("select day, source, reason, rejects, record_bytes from quality.rejects_daily").fetchall()
    return {(day, source, reason): (n, size) for day, source, reason, n, size in rows}


def remaining(conn: psycopg.Connection) -> Counter[dt.datetime]:
    return Counter(r for (r,) in conn.execute("select rejected_at from raw.rejects").fetchall())


def test_old_rejects_go_counted_and_newer_ones_stay(db: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    old = {
        ("product_events", "unknown channel", at(40, 1)): 3,
        ("product_events", "unknown channel", at(40, 23)): 2,
        ("product_events", "payload too large", at(40)): 1,
        ("minute_snapshots", "minute in the future", at(31, 0)): 4,
        ("product_events", "unknown channel", at(RETENTION, 0) - dt.timedelta(microseconds=1)): 1,  # day 31's end
    }
    new = {
        ("product_events", "unknown channel", at(RETENTION, 0)): 2,  # the cutoff itself stays
        ("product_events", "unknown channel", at(29)): 5,
        ("minute_snapshots", "minute in the future", at(0)): 1,
    }
    for (source, reason, when), n in {**old, **new}.items():
        for _ in range(n):
            reject(db, source, reason, when)

    with caplog.at_level(logging.INFO, logger="collectors.orchestration.cleanup"):
        pruned = prune_rejects(db, RETENTION)

    assert pruned.cutoff == at(RETENTION, 0) == rejects_cutoff(RETENTION)
    assert pruned.deleted == sum(old.values())
    expected: Counter[tuple[dt.date, str, str]] = Counter()
    for (source, reason, when), n in old.items():
        expected[(when.date(), source, reason)] += n
    assert daily(db) == {key: (n, 10 * n) for key, n in expected.items()}
    assert pruned.counts == len(expected)
    assert remaining(db) == Counter({when: n for (_, _, when), n in new.items()})
    assert f"deleted {sum(old.values())} rows of raw.rejects" in caplog.text

    # a second run finds nothing more to delete and leaves the counts as they are
    assert prune_rejects(db, RETENTION).deleted == 0
    assert daily(db) == {key: (n, 10 * n) for key, n in expected.items()}


def test_a_shorter_retention_adds_to_the_days_already_counted(db: psycopg.Connection) -> None:
    reject(db, "product_events", "unknown channel", at(40, 1))
    prune_rejects(db, RETENTION)
    # rejects of a counted day that arrived later (a late replay) and a newer day, pruned with a shorter retention
    reject(db, "product_events", "unknown channel", at(40, 5), size=7)
    reject(db, "product_events", "unknown channel", at(10))
    pruned = prune_rejects(db, 5)
    assert pruned.deleted == 2
    day_40 = (at(40).date(), "product_events", "unknown channel")
    day_10 = (at(10).date(), "product_events", "unknown channel")
    assert daily(db) == {day_40: (2, 17), day_10: (1, 10)}
    first, last = db.execute(
        "select first_rejected, last_rejected from quality.rejects_daily where day = %s", (day_40[0],)
    ).fetchone()
    assert (first, last) == (at(40, 1), at(40, 5))


def test_the_cutoff_never_runs_ahead_of_today() -> None:
    assert rejects_cutoff(RETENTION, TODAY + dt.timedelta(days=100)) == rejects_cutoff(RETENTION)
    assert rejects_cutoff(RETENTION, TODAY - dt.timedelta(days=7)) == at(RETENTION + 7, 0)


def test_the_retention_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetentionDays().rejects == RetentionDays.model_fields["rejects"].default
    monkeypatch.setenv("TELEMETRY_RETENTION_REJECTS", "90")
    assert RetentionDays().rejects == 90
    monkeypatch.setenv("TELEMETRY_RETENTION_REJECTS", "0")
    with pytest.raises(pydantic.ValidationError):
        RetentionDays()
