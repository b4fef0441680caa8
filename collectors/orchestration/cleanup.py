"""The weekly cleanup: which raw partitions may go, and dropping them with a log.

A day's partition of a raw table is dropped only when (1) it is older than the table's retention,
counted back from today (the same clock the receiver uses to refuse rows older than the retention, so
no row can still be on its way into a partition that goes; whatever window the run has, today's and
future partitions are never dropped), (2) every build it feeds is in ``quality.dbt_builds``, and (3)
it holds exactly the rows it held when validation started: rows that landed since were never
validated, so their partition stays (checked under an exclusive lock of the partition, so nothing can
land between the check and the drop). Message samples also feed the reliability of the neighbouring
windows (a receiver counts when it was seen before and after a window), so their neighbours must be
built too. Validation of what is about to go happens in between (``collectors.orchestration.validation``); the DAG
drops only partitions that were validated.
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
from collectors.orchestration.cadences import CADENCES, Cadence
from collectors.warehouse.db import RAW_TABLES
from collectors.warehouse.partitions import Partition, partitions_older_than, utc_today

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


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return start, start + dt.timedelta(days=1)


def _built_windows(conn: psycopg.Connection, cadence: str, part: str, start: dt.datetime, end: dt.datetime):
    rows = conn.execute(
        "select window_start, window_end from quality.dbt_builds"
        " where cadence = %s and part = %s and family is null and window_start < %s and window_end > %s",
        (cadence, part, end, start),
    ).fetchall()
    return [(s.astimezone(dt.UTC), e.astimezone(dt.UTC)) for s, e in rows]


def missing_builds(conn: psycopg.Connection, table: str, day: dt.date) -> list[str]:
    """Periods fed by ``table``'s partition for ``day`` that no recorded build covers."""
    missing: list[str] = []
    day_start, day_end = _day_bounds(day)
    for feed in FEEDS[table]:
        cadence: Cadence = CADENCES[feed.cadence]
        start, end = day_start, day_end
        if feed.neighbours:
            start, end = cadence.shift(start, -1), cadence.shift(end)
        built = _built_windows(conn, feed.cadence, feed.part, start, end)
        for period in cadence.periods(start, end):
            if not any(s <= period and cadence.shift(period) <= e for s, e in built):
                missing.append(f"{feed.cadence} {feed.part} {period.isoformat()}")
    return missing


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
            missing = missing_builds(conn, table, partition.day)
            if missing:
                more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
                plan.keep.append(Kept(partition, "not aggregated yet: " + ", ".join(missing[:3]) + more))
            else:
                plan.drop.append(partition)
    return plan


def count_rows(conn: psycopg.Connection, partitions: Iterable[Partition]) -> dict[str, int]:
    """Rows in each partition now, by partition name (taken before validation, compared before the drop)."""
    return {
        p.name: conn.execute(sql.SQL("select count(*) from raw.{}").format(sql.Identifier(p.name))).fetchone()[0]
        for p in partitions
    }


def drop_partitions(
    conn: psycopg.Connection,
    plan: CleanupPlan,
    validated: Mapping[str, int],
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> list[Partition]:
    """Drop the planned partitions that were validated (``validated``: partition name -> rows it held when
    validation started) and still hold exactly those rows; log every decision in quality.cleanup_log.

    One transaction per partition: a failure part-way leaves the log true to what happened.
    """
    today = utc_today()
    dropped: list[Partition] = []
    decisions = [(p, None) for p in plan.drop] + [(k.partition, k.reason) for k in plan.keep]
    for partition, kept_because in decisions:
        with conn.transaction():
            reason = kept_because
            if reason is None and partition.name not in validated:
                reason = "not in the validated set of this run"
            if reason is None and partition.day >= today:
                reason = "today's and future partitions are never dropped"
            if reason is None:
                # nothing lands in it while the lock is held, and what landed before is counted
                target = sql.Identifier("raw", partition.name)
                conn.execute(sql.SQL("lock table {} in access exclusive mode").format(target))
                rows = conn.execute(sql.SQL("select count(*) from {}").format(target)).fetchone()[0]
                if rows != validated[partition.name]:
                    reason = (
                        f"rows arrived after validation ({validated[partition.name]} were validated, {rows} are "
                        "there now); the next validation covers them"
                    )
            action = "kept" if reason is not None else "dropped"
            if action == "dropped":
                conn.execute(sql.SQL("drop table raw.{}").format(sql.Identifier(partition.name)))
                dropped.append(partition)
                reason = "older than retention, aggregated and validated"
            conn.execute(
                "insert into quality.cleanup_log (dag_id, run_id, table_name, partition_name, day, action, reason)"
                " values (%s, %s, %s, %s, %s, %s, %s)",
                (dag_id, run_id, partition.table, partition.name, partition.day, action, reason),
            )
        log.info("%s raw.%s (%s)", action, partition.name, reason)
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
