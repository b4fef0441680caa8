"""The weekly cleanup: which raw partitions may go, and detaching, then dropping them, with a log.

A day's partition of a raw table is detached only when (1) it is older than the table's retention,
counted back from today (the same clock the receiver uses to refuse rows older than the retention, so
no row can still be on its way into a partition that goes; whatever window the run has, today's and
future partitions are never dropped), (2) every build it feeds is in ``quality.dbt_builds``, (3) the
newest build of each of those periods started after the last batch that landed rows in the partition
(``quality.ingest_batches``): rows that arrived late are in no mart yet, and (4) it holds exactly the
rows it held when validation started: rows that landed since were never validated, so their partition
stays (checked under an exclusive lock of the table, so nothing can land between the check and the
detach). Message samples also feed the reliability of the neighbouring windows (a receiver counts when
it was seen before and after a window), so their neighbours must be built too. Validation of what is
about to go happens in between (``collectors.orchestration.validation``); the DAG detaches only
partitions that were validated.

Detaching is the first of two steps: the partition moves, whole, to the schema ``raw_detached``, where
nothing reads it, and ``quality.cleanup_log`` records when it may be dropped (``drop_after``, a grace
period later). A later cleanup drops it then; until then ``telemetry-db partitions reattach NAME`` puts
it back (``reattach``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from collectors.config import RetentionDays
from collectors.ingest import registry
from collectors.ingest.registry import Feed
from collectors.orchestration.build_ledger import whole_builds
from collectors.orchestration.cadences import CADENCES, Cadence
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.partitions import (
    DETACHED_SCHEMA,
    Partition,
    day_bounds,
    detached_partitions,
    log_cleanup,
    partitions_older_than,
    raw_table,
    utc_today,
)

log = logging.getLogger(__name__)


FEEDS: dict[str, tuple[Feed, ...]] = {table.name: table.feeds for table in registry.RAW_TABLES}


@dataclass(frozen=True)
class Kept:
    partition: Partition
    reason: str


@dataclass
class CleanupPlan:
    as_of: dt.date
    drop: list[Partition] = field(default_factory=list)
    keep: list[Kept] = field(default_factory=list)


def _fed_periods(conn: psycopg.Connection, table: str, day: dt.date) -> list[tuple[str, dt.datetime | None]]:
    """Each period fed by ``table``'s partition for ``day``, named, with when its newest build started (None:
    never built)."""
    day_start, day_end = day_bounds(day)
    periods = []
    for feed in FEEDS[table]:
        cadence: Cadence = CADENCES[feed.cadence]
        start, end = day_start, day_end
        if feed.neighbours:
            start, end = cadence.shift(start, -1), cadence.shift(end)
        built = whole_builds(conn, since=start, until=end, cadence=feed.cadence, part=feed.part)
        for period in cadence.periods(start, end):
            # a build that started before rows arrived may have missed them, however late it finished
            started = [b.started_at for b in built if b.window.covers(period, cadence.shift(period))]
            periods.append((f"{feed.cadence} {feed.part} {period.isoformat()}", max(started, default=None)))
    return periods


def missing_builds(conn: psycopg.Connection, table: str, day: dt.date) -> list[str]:
    """Periods fed by ``table``'s partition for ``day`` that no recorded build covers."""
    return _unbuilt(_fed_periods(conn, table, day))


def _unbuilt(periods: list[tuple[str, dt.datetime | None]]) -> list[str]:
    return [name for name, started in periods if started is None]


def last_arrival(conn: psycopg.Connection, table: str, day: dt.date) -> dt.datetime | None:
    """When the last batch that landed rows of ``day`` in ``table`` was received (None: the ingest ledger has
    none, e.g. rows written by hand)."""
    # a batch lands no rows dated after it was received (the receiver refuses rows far in the future), so only
    # batches received since the day began can hold its rows: the received_at index bounds the scan
    since = day_bounds(day)[0] - dt.timedelta(days=1)
    (arrived,) = conn.execute(
        "select max(received_at) from quality.ingest_batches"
        " where source = %s and received_at >= %s and accepted_by_day ? %s",
        (table, since, day.isoformat()),
    ).fetchone()
    return None if arrived is None else arrived.astimezone(dt.UTC)


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
    return ", ".join(items[:3]) + more


def plan_cleanup(
    conn: psycopg.Connection,
    retention: RetentionDays,
    as_of: dt.date | None = None,
    tables: Iterable[str] = RAW_TABLES,
) -> CleanupPlan:
    """Partitions older than each table's retention before ``as_of`` (default and at most: today, UTC), split
    into droppable and kept. Today's and future partitions are never in the plan."""
    today = utc_today()
    plan = CleanupPlan(min(as_of or today, today))
    for table in tables:
        for partition in partitions_older_than(conn, table, retention.for_table(table), today=plan.as_of):
            if partition.day >= today:
                continue
            periods = _fed_periods(conn, table, partition.day)
            if missing := _unbuilt(periods):
                plan.keep.append(Kept(partition, "not aggregated yet: " + _listed(missing)))
                continue
            # the newest build of each period started before rows of the day last arrived: those rows may be in
            # no mart yet
            arrived = last_arrival(conn, table, partition.day)
            stale = [name for name, started in periods if arrived and started and started < arrived]
            if arrived and stale:
                late = f"rows arrived at {arrived.isoformat()}"
                plan.keep.append(Kept(partition, f"{late} after the last build of {_listed(stale)}; rebuild first"))
            else:
                plan.drop.append(partition)
    return plan


def count_rows(conn: psycopg.Connection, partitions: Iterable[Partition]) -> dict[str, int]:
    """Rows in each partition now, by partition name (taken before validation, compared before the drop)."""
    return {
        p.name: conn.execute(sql.SQL("select count(*) from raw.{}").format(sql.Identifier(p.name))).fetchone()[0]
        for p in partitions
    }


def detach_partitions(
    conn: psycopg.Connection,
    plan: CleanupPlan,
    validated: Mapping[str, int],
    *,
    grace: dt.timedelta,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> list[Partition]:
    """Detach the planned partitions that were validated (``validated``: partition name -> rows it held when
    validation started) and still hold exactly those rows, moving them to ``raw_detached`` to be dropped after
    ``grace``; log every decision in quality.cleanup_log.

    One transaction per partition: a failure part-way leaves the log true to what happened.
    """
    today = utc_today()
    detached: list[Partition] = []
    decisions = [(p, None) for p in plan.drop] + [(k.partition, k.reason) for k in plan.keep]
    for partition, kept_because in decisions:
        with conn.transaction():
            reason = kept_because
            if reason is None and partition.name not in validated:
                reason = "not in the validated set of this run"
            if reason is None and partition.day >= today:
                reason = "today's and future partitions are never dropped"
            if reason is None:
                # The table first, then its partition: the order an insert takes them in, so the two never wait
                # on each other; nothing lands in it while the locks are held, and what landed before is counted.
                conn.execute(sql.SQL("lock table {} in access exclusive mode").format(raw_table(partition.table)))
                rows = conn.execute(sql.SQL("select count(*) from {}").format(raw_table(partition.name))).fetchone()[0]
                if rows != validated[partition.name]:
                    reason = (
                        f"rows arrived after validation ({validated[partition.name]} were validated, {rows} are "
                        "there now); the next validation covers them"
                    )
            drop_after = None
            if reason is None:
                table, name = raw_table(partition.table), raw_table(partition.name)
                conn.execute(sql.SQL("alter table {} detach partition {}").format(table, name))
                conn.execute(sql.SQL("alter table {} set schema {}").format(name, sql.Identifier(DETACHED_SCHEMA)))
                (drop_after,) = conn.execute("select now() + %s", (grace,)).fetchone()
                detached.append(partition)
                reason = "older than retention, aggregated and validated; kept detached until drop_after"
            action = "kept" if drop_after is None else "detached"
            log_cleanup(conn, partition, action, reason, dag_id, run_id, drop_after)
        log.info("%s raw.%s (%s)", action, partition.name, reason)
    return detached


def drop_expired_detached(
    conn: psycopg.Connection, *, now: dt.datetime | None = None, dag_id: str | None = None, run_id: str | None = None
) -> list[Partition]:
    """Drop the detached partitions whose grace period is over (``drop_after`` before ``now``, default: the
    database's clock); log each."""
    (clock,) = conn.execute("select now()").fetchone() if now is None else (now,)
    dropped: list[Partition] = []
    for entry in detached_partitions(conn):
        if entry.drop_after is None or entry.drop_after > clock:
            continue
        with conn.transaction():
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier(DETACHED_SCHEMA, entry.partition.name)))
            reason = f"detached, and its grace period ended at {entry.drop_after.isoformat()}"
            log_cleanup(conn, entry.partition, "dropped", reason, dag_id, run_id)
        log.info("dropped raw_detached.%s (%s)", entry.partition.name, reason)
        dropped.append(entry.partition)
    return dropped


# --------------------------------------------------------------------------- raw.rejects
#
# Refused records are kept to be looked into, not aggregated by dbt: nothing has to be built or validated before
# they go. Whole UTC days go at once (the cutoff is a midnight), so a day's count is complete in one run.


@dataclass(frozen=True)
class RejectsPruned:
    cutoff: dt.datetime  # rejects with rejected_at before this (a UTC midnight) were deleted
    deleted: int
    counts: int  # (day, source, reason) rows of quality.rejects_daily added to


def rejects_cutoff(retention_days: int, as_of: dt.date | None = None) -> dt.datetime:
    """The UTC midnight ``retention_days`` days before ``as_of`` (default and at most: today, UTC)."""
    today = utc_today()
    day = min(as_of or today, today) - dt.timedelta(days=retention_days)
    return dt.datetime.combine(day, dt.time(), dt.UTC)


# One statement: what the delete returns is exactly what is counted, whatever lands meanwhile.
_PRUNE_REJECTS = """
with deleted as (
    delete from raw.rejects where rejected_at < %(cutoff)s
    returning source, reason, record_bytes, length(record) as kept_bytes, rejected_at
), counted as (
    insert into quality.rejects_daily
        (day, source, reason, rejects, record_bytes, first_rejected, last_rejected)
    select (rejected_at at time zone 'UTC')::date, source, reason, count(*),
           coalesce(sum(coalesce(record_bytes, kept_bytes)), 0), min(rejected_at), max(rejected_at)
    from deleted
    group by 1, 2, 3
    on conflict (day, source, reason) do update set
        rejects = quality.rejects_daily.rejects + excluded.rejects,
        record_bytes = quality.rejects_daily.record_bytes + excluded.record_bytes,
        first_rejected = least(quality.rejects_daily.first_rejected, excluded.first_rejected),
        last_rejected = greatest(quality.rejects_daily.last_rejected, excluded.last_rejected),
        pruned_at = now()
    returning 1
)
select (select count(*) from deleted), (select count(*) from counted)
"""


def prune_rejects(conn: psycopg.Connection, retention_days: int, as_of: dt.date | None = None) -> RejectsPruned:
    """Delete the raw.rejects rows older than ``retention_days`` (whole UTC days before the cutoff), adding them
    to quality.rejects_daily (rejects and bytes per day, source and reason) in the same statement."""
    cutoff = rejects_cutoff(retention_days, as_of)
    with conn.transaction():
        deleted, counts = conn.execute(_PRUNE_REJECTS, {"cutoff": cutoff}).fetchone()
    log.info(
        "deleted %d rows of raw.rejects rejected before %s (retention %d days); counted in %d rows of "
        "quality.rejects_daily",
        deleted,
        cutoff.isoformat(),
        retention_days,
        counts,
    )
    return RejectsPruned(cutoff, deleted, counts)
