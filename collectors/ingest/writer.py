"""Write one validated batch in one transaction: rows, rejects and the ledger row, then commit.

Fast path: COPY straight into the partitioned tables inside a savepoint. Duplicates are rare (a client retrying
a batch), so only when that COPY hits a unique violation do we roll back to the savepoint, COPY into a
temporary table and ``INSERT ... ON CONFLICT DO NOTHING`` per day, which counts duplicates. If the database
refuses a value that validation let through (a JSON payload with a lone surrogate escape or a number beyond
``numeric``, a key too large for its unique index), the batch lands part by part, each part in a savepoint of
its own: the COPY error names the refused row, so the rows before it land as a part, the refused record goes to
``raw.rejects`` and the rest is tried again (a refusal that names no row halves its part instead). The batch is
copied about twice in all, whatever the number of refused records, never a statement per row. A batch's
records may land in several tables (an ``account_created`` event also lands in ``raw.accounts_created``): a
record's rows land together or not at all.

The work stops at a deadline (the client's, less a margin): what is neither stored nor refused by then is
answered as "resend" (``BatchOutcome.deferred``), so a client never waits past its deadline for an answer.

Rejects carry the batch id and the record's index, and a unique index on those collapses a replayed batch's
rejects like its records. Only INSERT privilege is needed (the ``telemetry_ingest`` role): the staging table is
declared from the table's column types, not copied with ``LIKE``, which would need SELECT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import errors, postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps

from collectors.ingest.registry import RawTable
from collectors.ingest.rules import IdArray, Kept

PARTITION_CACHE_SECONDS = 60.0
MAX_REJECT_BYTES = 64 * 1024
SINGLES_BELOW = 16  # a refused part this small is retried record by record (fewer savepoints than halving on)

# What the database raises for a value it refuses (psycopg raises the DB-API classes, e.g. a jsonb parse error is
# InvalidTextRepresentation, a DataError; an index row over the btree limit is ProgramLimitExceeded, which psycopg
# files under OperationalError): such a row becomes a reject, never a failed (and endlessly retried) batch.
REFUSED_VALUE = (psycopg.DataError, psycopg.IntegrityError, errors.ProgramLimitExceeded)


@dataclass
class Reject:
    """A refused record: its index in the batch (the line number for the loader), the reason and what is kept.

    ``size`` and ``sha256`` describe the record as sent when ``record`` is not all of it (withheld fields).
    """

    index: int
    reason: str
    record: bytes
    size: int | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, index: int, reason: str, kept: Kept) -> Reject:
        return cls(index, f"{reason}; {kept.note}" if kept.note else reason, kept.record, kept.size, kept.sha256)


def _serialized(message) -> Kept:
    return Kept(message.SerializeToString())


@dataclass
class TableWrite:
    """What one batch lands in one raw table: rows, the batch index of each row's record, and the record itself
    (kept only if the row is refused). Rows of several writes with the same index belong to one record."""

    table: RawTable
    rows: list[tuple]
    indexes: list[int]
    messages: Sequence
    keep: Callable[[object], Kept] = _serialized  # what raw.rejects keeps of a refused record

    def reject(self, position: int, reason: str) -> Reject:
        return Reject.of(self.indexes[position], reason, self.keep(self.messages[position]))

    def reject_index(self, index: int, reason: str) -> Reject:
        """The reject of the record at batch index ``index``, kept from this write's first row of it."""
        return self.reject(self.indexes.index(index), reason)

    def only(self, indexes: set[int] | frozenset[int]) -> TableWrite:
        """The rows of the records in ``indexes``."""
        keep = [p for p, index in enumerate(self.indexes) if index in indexes]
        return TableWrite(
            self.table,
            [self.rows[p] for p in keep],
            [self.indexes[p] for p in keep],
            [self.messages[p] for p in keep],
            self.keep,
        )


@dataclass
class TableOutcome:
    """Rows landed in one table, per UTC hour of its partition column (the reconcile planner reads the hours, the
    raw/ledger reconciliation the days), and the duplicates skipped."""

    accepted_by_hour: Counter[dt.datetime] = field(default_factory=Counter)
    duplicates: int = 0

    @property
    def accepted(self) -> int:
        return sum(self.accepted_by_hour.values())

    @property
    def accepted_by_day(self) -> Counter[dt.date]:
        days: Counter[dt.date] = Counter()
        for hour, rows in self.accepted_by_hour.items():
            days[hour.date()] += rows
        return days

    def add(self, other: TableOutcome) -> None:
        self.accepted_by_hour.update(other.accepted_by_hour)
        self.duplicates += other.duplicates


@dataclass
class BatchOutcome:
    """What landed; ``tables`` is keyed by raw table, in the order of the batch's writes. ``deferred``: batch
    indexes neither stored nor refused when the deadline came (the sender should resend them)."""

    tables: dict[str, TableOutcome] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    conflicts: int = 0  # of the rejects, conflicting duplicates found before writing


class PartitionCache:
    """The days that have a partition, per raw table, refreshed at most once a minute (or when a day is missing)."""

    def __init__(self) -> None:
        self._days: dict[str, set[dt.date]] = {}
        self._loaded_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def _load(self, conn: psycopg.Connection, table: str) -> None:
        rows = conn.execute("select day from raw.partitions(%s)", (table,)).fetchall()
        self._days[table] = {day for (day,) in rows}
        self._loaded_at[table] = time.monotonic()

    def missing(self, conn: psycopg.Connection, table: str, days: Iterable[dt.date]) -> set[dt.date]:
        """The days among ``days`` that have no partition of ``table``."""
        wanted = set(days)
        with self._lock:
            stale = time.monotonic() - self._loaded_at.get(table, 0.0) > PARTITION_CACHE_SECONDS
            if stale or not wanted <= self._days.get(table, set()):
                self._load(conn, table)
            return wanted - self._days.get(table, set())


def copy_rows(
    cur: psycopg.Cursor,
    target: sql.Composable,
    columns: Sequence[str],
    rows: Iterable[tuple],
    types: Sequence[str] | None = None,
) -> None:
    """COPY ``rows`` into ``target``; binary when the column ``types`` are given (about 1.3x faster here)."""
    statement = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    if types is not None:
        statement += sql.SQL(" (format binary)")
    with cur.copy(statement) as copy:
        if types is not None:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _json_text(value: str) -> str:
    """Rows carry JSON already serialized and validated: send it as it is."""
    return value


_INT8 = postgres.types["int8"]
_ARRAY_HEADER = struct.Struct("!iiiii")  # dimensions, has nulls, element type, length, lower bound
_ARRAY_ELEMENTS = np.dtype([("length", ">i4"), ("value", ">i8")])


class IdArrayDumper(Dumper):
    """``int8[]`` in PostgreSQL's binary array format, built by numpy from an :class:`IdArray` (or a list)
    without a Python object per element."""

    format = Format.BINARY
    oid = _INT8.array_oid

    def dump(self, obj: object) -> bytes:
        values = obj.values if isinstance(obj, IdArray) else np.asarray(obj, dtype=np.int64)
        if not values.size:
            return struct.pack("!iii", 0, 0, _INT8.oid)
        elements = np.empty(values.size, dtype=_ARRAY_ELEMENTS)
        elements["length"] = 8
        elements["value"] = values
        return _ARRAY_HEADER.pack(1, 0, _INT8.oid, values.size, 1) + elements.tobytes()


def _day(value: dt.datetime) -> dt.date:
    return value.astimezone(dt.UTC).date()


def _days(write: TableWrite) -> list[dt.date]:
    p = write.table.partition_index
    return [_day(row[p]) for row in write.rows]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _hours(write: TableWrite) -> Counter[dt.datetime]:
    """Rows of ``write`` per UTC hour of the partition column."""
    p = write.table.partition_index
    # counted by hour number, then each hour made once: a batch holds many rows and few hours
    counts = Counter(int(row[p].timestamp() // 3600) for row in write.rows)
    return Counter({_EPOCH + dt.timedelta(hours=hour): rows for hour, rows in counts.items()})


_COPY_ROW = re.compile(r"COPY [^,]+, line (\d+)")


def _copy_row(error: psycopg.Error) -> int | None:
    """The position of the row a failed COPY names in its error context (``COPY t, line 7, ...``), if any."""
    match = _COPY_ROW.search(error.diag.context or "")
    return int(match.group(1)) - 1 if match else None


class _PartRefused(Exception):
    """The database refused a part: ``error``, and when it says, the ``write`` and ``row`` it refused."""

    def __init__(self, error: psycopg.Error, write: TableWrite | None = None, row: int | None = None) -> None:
        super().__init__(str(error))
        self.error, self.write, self.row = error, write, row


REJECT_COLUMNS = (
    "source",
    "reason",
    "record",
    "record_index",
    "batch_id",
    "file_name",
    "line_number",
    "record_bytes",
    "record_sha256",
)
REJECT_TYPES = ("text", "text", "bytea", "int4", "uuid", "text", "int4", "int4", "text")


class BatchWriter:
    """Lands batches through a connection pool; thread-safe. ``max_reject_bytes``: what a reject keeps of its
    record at most (the rest is described by its size and SHA-256)."""

    def __init__(self, pool, *, max_reject_bytes: int = MAX_REJECT_BYTES) -> None:
        self.pool = pool
        self.partitions = PartitionCache()
        self.max_reject_bytes = max_reject_bytes

    def write(
        self,
        source: str,
        batch_id: str,
        writes: Sequence[TableWrite],
        rejects: list[Reject],
        *,
        deadline: float | None = None,
        conflicts: int = 0,
        file_name: str | None = None,
    ) -> BatchOutcome:
        """Land ``writes`` and ``rejects`` of one batch in one transaction; returns after commit.

        ``deadline`` (``time.monotonic()``): stop refining a batch the database partly refuses by then.
        ``file_name``: the batch comes from a file (the loader); each reject's index is its line number there.
        Nothing is written for a batch with nothing in it (no empty ledger rows).
        """
        outcome = BatchOutcome(rejects=list(rejects), conflicts=conflicts)
        outcome.tables = {write.table.name: TableOutcome() for write in writes}
        if not rejects and not any(write.rows for write in writes):
            return outcome
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            set_json_dumps(_json_text, cur)
            cur.adapters.register_dumper(IdArray, IdArrayDumper)
            writes = self._drop_unpartitioned(conn, writes, outcome)
            if any(write.rows for write in writes):
                self._land(conn, cur, writes, outcome, deadline)
            if outcome.rejects:
                self._store_rejects(cur, source, batch_id, outcome.rejects, file_name)
            self._record(cur, batch_id, outcome)
        return outcome

    # ------------------------------------------------------------------ before writing

    @staticmethod
    def _without(writes: Sequence[TableWrite], refused: set[int]) -> list[TableWrite]:
        if not refused:
            return list(writes)
        return [write.only(set(write.indexes) - refused) for write in writes]

    def _drop_unpartitioned(
        self, conn: psycopg.Connection, writes: Sequence[TableWrite], outcome: BatchOutcome
    ) -> list[TableWrite]:
        """Move records with a row whose day has no partition to the rejects (a missing partition must not fail
        the batch; a record's other rows go with it)."""
        refused: set[int] = set()
        for write in writes:
            days = _days(write)
            missing = self.partitions.missing(conn, write.table.name, set(days))
            for position, day in enumerate(days):
                index = write.indexes[position]
                if day in missing and index not in refused:
                    reason = f"no partition of raw.{write.table.name} for {day} (run `telemetry-db partitions create`)"
                    outcome.rejects.append(write.reject(position, reason))
                    refused.add(index)
        return self._without(writes, refused)

    # ------------------------------------------------------------------ landing

    def _land(
        self,
        conn: psycopg.Connection,
        cur: psycopg.Cursor,
        writes: list[TableWrite],
        outcome: BatchOutcome,
        deadline: float | None,
    ) -> None:
        try:
            with conn.transaction():
                for write in writes:
                    table = write.table
                    copy_rows(cur, sql.Identifier("raw", table.name), table.column_names, write.rows, table.types)
            for write in writes:
                outcome.tables[write.table.name].accepted_by_hour.update(_hours(write))
            return
        except errors.UniqueViolation:
            pass  # a retried batch or duplicates inside it: take the counting path below
        except REFUSED_VALUE:
            self._land_in_parts(conn, cur, writes, outcome, deadline)
            return
        try:
            counted = self._land_deduplicated(conn, cur, writes)
        except REFUSED_VALUE:
            # duplicates and a value the database refuses in one batch (e.g. a retried batch that had a reject)
            self._land_in_parts(conn, cur, writes, outcome, deadline)
            return
        for table, counts in counted.items():
            outcome.tables[table].add(counts)

    def _land_deduplicated(
        self, conn: psycopg.Connection, cur: psycopg.Cursor, writes: Sequence[TableWrite]
    ) -> dict[str, TableOutcome]:
        """Land ``writes`` in one savepoint through staging tables, counting duplicates; raises what the database
        refuses (and then nothing of ``writes`` is kept)."""
        counted = {write.table.name: TableOutcome() for write in writes}
        with conn.transaction():
            for write in writes:
                if write.rows:
                    self._insert_deduplicated(cur, write, counted[write.table.name])
        return counted

    def _land_part(
        self, conn: psycopg.Connection, cur: psycopg.Cursor, writes: Sequence[TableWrite], staged: bool
    ) -> dict[str, TableOutcome]:
        """Land one part: COPY straight in (``staged`` False), or through staging tables when the batch holds
        duplicates. Raises :class:`_PartRefused` naming the write (and, when the error says, the row)."""
        if staged:
            try:
                return self._land_deduplicated(conn, cur, writes)
            except REFUSED_VALUE as error:
                raise _PartRefused(error) from error
        counted = {write.table.name: TableOutcome() for write in writes}
        with conn.transaction():
            for write in writes:
                if not write.rows:
                    continue
                table = write.table
                try:
                    copy_rows(cur, sql.Identifier("raw", table.name), table.column_names, write.rows, table.types)
                except REFUSED_VALUE as error:
                    if isinstance(error, errors.UniqueViolation):
                        raise
                    raise _PartRefused(error, write, _copy_row(error)) from error
                counted[table.name].accepted_by_hour.update(_hours(write))
        return counted

    def _land_in_parts(
        self,
        conn: psycopg.Connection,
        cur: psycopg.Cursor,
        writes: list[TableWrite],
        outcome: BatchOutcome,
        deadline: float | None,
    ) -> None:
        """Land the records of ``writes`` part by part, down to the records the database refuses (rejects).

        When a COPY names the refused row, the records before it land as a part, the refused record is
        rejected and the rest is a part of its own; otherwise the part is halved (record by record once it is
        small). Parts left when the deadline passes are deferred."""
        staged = False
        pending = [sorted({index for write in writes for index in write.indexes})]
        while pending:
            part = pending.pop()
            if deadline is not None and time.monotonic() > deadline:
                outcome.deferred += part
                for rest in pending:
                    outcome.deferred += rest
                outcome.deferred.sort()
                return
            subset = [write.only(frozenset(part)) for write in writes]
            try:
                counted = self._land_part(conn, cur, subset, staged)
            except errors.UniqueViolation:
                staged = True  # duplicates in the batch: count them from now on
                pending.append(part)
                continue
            except _PartRefused as refused:
                pending += self._split(part, subset, refused, outcome)
                continue
            for table, counts in counted.items():
                outcome.tables[table].add(counts)

    @staticmethod
    def _split(
        part: list[int], subset: Sequence[TableWrite], refused: _PartRefused, outcome: BatchOutcome
    ) -> list[list[int]]:
        """What to try next after ``part`` was refused (the parts to land, last first); rejects the record the
        refusal names, if it names one."""
        reason = f"refused by the database: {refused.error.diag.message_primary or refused.error}"
        if refused.write is not None and refused.row is not None and refused.row < len(refused.write.rows):
            bad = refused.write.indexes[refused.row]
            outcome.rejects.append(next(w for w in subset if bad in w.indexes).reject_index(bad, reason))
            position = part.index(bad)
            return [rest for rest in (part[position + 1 :], part[:position]) if rest]
        if len(part) == 1:
            first = next(write for write in subset if write.rows)  # the record's main row comes first
            outcome.rejects.append(first.reject(0, reason))
            return []
        if len(part) <= SINGLES_BELOW:
            return [[index] for index in reversed(part)]
        half = len(part) // 2
        return [part[half:], part[:half]]

    def _insert_deduplicated(self, cur: psycopg.Cursor, write: TableWrite, outcome: TableOutcome) -> None:
        table = write.table
        stage = sql.Identifier(f"stage_{table.name}")
        cols = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
        # declared from the column types: ``like raw.<table>`` would need SELECT, which the ingest role lacks
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in zip(table.column_names, table.types, strict=True)
        )
        cur.execute(sql.SQL("create temp table if not exists {} ({}) on commit drop").format(stage, columns))
        cur.execute(sql.SQL("truncate {}").format(stage))
        copy_rows(cur, stage, table.column_names, write.rows, table.types)
        insert = sql.SQL(
            "insert into {target} ({cols}) select {cols} from {stage}"
            " where {part} >= %s and {part} < %s on conflict do nothing"
        ).format(
            target=sql.Identifier("raw", table.name),
            cols=cols,
            stage=stage,
            part=sql.Identifier(table.partition_column),
        )
        hours = _hours(write)
        by_day: dict[dt.date, Counter[dt.datetime]] = {}
        for hour, rows in hours.items():
            by_day.setdefault(hour.date(), Counter())[hour] = rows
        for day, staged in sorted(by_day.items()):
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            # One statement per day. Only a day that is partly duplicates needs one per hour to say which hours
            # got its new rows (RETURNING would, but needs SELECT, which the ingest role lacks): it is rolled back
            # and landed hour by hour.
            with cur.connection.transaction() as day_part:
                cur.execute(insert, (start, start + dt.timedelta(days=1)))
                landed = cur.rowcount
                if 0 < landed < staged.total():
                    raise psycopg.Rollback(day_part)
            if landed == staged.total():
                outcome.accepted_by_hour.update(staged)
            elif landed:
                for hour in sorted(staged):
                    cur.execute(insert, (hour, hour + dt.timedelta(hours=1)))
                    if cur.rowcount:
                        outcome.accepted_by_hour[hour] += cur.rowcount
        outcome.duplicates += len(write.rows) - outcome.accepted

    # ------------------------------------------------------------------ rejects and the ledger

    def _store_rejects(
        self, cur: psycopg.Cursor, source: str, batch_id: str, rejects: Sequence[Reject], file_name: str | None
    ) -> None:
        """Insert the rejects, each keeping at most ``max_reject_bytes`` of its record; a replayed batch's rejects
        are already there (same batch id, source and index) and are skipped."""
        limit = self.max_reject_bytes
        rows = []
        for r in rejects:
            size = r.size if r.size is not None else len(r.record)
            reason = r.reason
            if len(r.record) > limit:
                reason += f"; the record is {size} bytes, its first {limit} are kept"
            rows.append(
                (
                    source,
                    reason,
                    r.record[:limit],
                    r.index,
                    batch_id,
                    file_name,
                    r.index if file_name is not None else None,
                    size,
                    r.sha256 or hashlib.sha256(r.record).hexdigest(),
                )
            )
        columns = sql.SQL(", ").join(map(sql.Identifier, REJECT_COLUMNS))
        arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(kind)) for kind in REJECT_TYPES)
        cur.execute(
            sql.SQL("insert into raw.rejects ({}) select * from unnest({}) on conflict do nothing").format(
                columns, arrays
            ),
            [list(column) for column in zip(*rows, strict=True)],
        )

    @staticmethod
    def _record(cur: psycopg.Cursor, batch_id: str, outcome: BatchOutcome) -> None:
        """One ledger row per table the batch touched; rejects, conflicts and deferred records count on the first."""
        for position, (name, table) in enumerate(outcome.tables.items()):
            first = position == 0
            if not (table.accepted or table.duplicates or (first and (outcome.rejects or outcome.deferred))):
                continue
            cur.execute(
                "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, conflicts,"
                " deferred, accepted_by_day, accepted_by_hour, received_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
                (
                    batch_id,
                    name,
                    table.accepted,
                    table.duplicates,
                    len(outcome.rejects) if first else 0,
                    outcome.conflicts if first else 0,
                    len(outcome.deferred) if first else 0,
                    json.dumps({d.isoformat(): n for d, n in sorted(table.accepted_by_day.items())}),
                    json.dumps({h.isoformat(): n for h, n in sorted(table.accepted_by_hour.items())}),
                ),
            )
