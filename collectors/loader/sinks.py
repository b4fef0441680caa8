"""Where validated events land: straight into PostgreSQL (the receiver's writer) or through the receiver.

Both sinks take batches of (line number, raw line, event) and report, per
line, what happened, so diagnostics always name the line.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from collectors.client import IngestClient
from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import records
from collectors.receiver.service import ENDPOINTS, IngestService
from collectors.receiver.writer import BatchWriter, Reject
from collectors.warehouse.db import connect

PRODUCT_EVENTS = next(e for e in ENDPOINTS if e.spec is records.PRODUCT_EVENTS)
SOURCE = records.PRODUCT_EVENTS.table


@dataclass(frozen=True)
class Line:
    number: int
    raw: bytes
    event: pb.ProductEvent | None = None  # None when the line itself was refused, with ``error`` saying why
    error: str = ""


@dataclass
class BatchReport:
    accepted: int = 0
    duplicates: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class Sink(Protocol):
    """Where a file's batches land; ``file`` wraps one file (its transaction, for the database)."""

    def file(self, file_name: str) -> AbstractContextManager[None]: ...

    def land(self, lines: Sequence[Line]) -> BatchReport: ...

    def close(self) -> None: ...


class OriginalLine:
    """Stands in for a protobuf record in the writer so a refused line is stored as the bytes of the file."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def SerializeToString(self) -> bytes:
        return self.raw


def rule_check(settings: Settings, events: Sequence[pb.ProductEvent]) -> list[tuple[int, str]]:
    """The receiver's record rules over ``events``: (position, reason) of each refused one."""
    _writes, rejects = IngestService(None, settings).validate(PRODUCT_EVENTS, events, str(uuid.uuid4()))  # type: ignore[arg-type]
    return [(r.index, r.reason) for r in rejects]


class _OneConnection:
    """The pool interface BatchWriter needs, over one connection: each batch becomes a savepoint of the
    file's transaction, so a file lands whole or (``--strict``, errors) not at all."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        yield self.conn


class DatabaseSink:
    """Validates with the receiver's rules and COPYs with the receiver's writer, one transaction per file."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.settings = settings
        self.conn = connect(database_url, autocommit=True)
        self.writer = BatchWriter(_OneConnection(self.conn))
        self.file_name: str | None = None

    @contextmanager
    def file(self, file_name: str) -> Iterator[None]:
        """Everything landed inside this block commits together, or not at all if it raises."""
        self.file_name = file_name
        try:
            with self.conn.transaction():
                yield
        finally:
            self.file_name = None

    def land(self, lines: Sequence[Line]) -> BatchReport:
        batch_id = str(uuid.uuid4())
        parsed = [line for line in lines if line.event is not None]
        refused = [Reject(line.number, line.error, line.raw) for line in lines if line.event is None]
        writes, rule_rejects = IngestService(None, self.settings).validate(  # type: ignore[arg-type]
            PRODUCT_EVENTS, [line.event for line in parsed], batch_id
        )
        for reject in rule_rejects:
            line = parsed[reject.index]
            refused.append(Reject(line.number, reject.reason, line.raw))
        for write in writes:
            lines_of_rows = [parsed[i] for i in write.indexes]
            write.indexes = [line.number for line in lines_of_rows]
            write.messages = [OriginalLine(line.raw) for line in lines_of_rows]
        outcome = self.writer.write(SOURCE, batch_id, writes, refused)
        if outcome.rejects:
            self.conn.execute(
                "update raw.rejects set file_name = %s, line_number = record_index"
                " where batch_id = %s and file_name is null",
                (self.file_name, batch_id),
            )
        table = outcome.tables[SOURCE]
        return BatchReport(table.accepted, table.duplicates, sorted((r.index, r.reason) for r in outcome.rejects))

    def close(self) -> None:
        self.conn.close()


class ReceiverSink:
    """Sends events through the receiver (which applies the rules and stores its own rejects).

    Lines refused before sending (not JSON, missing fields) cannot travel as
    events; they are stored in raw.rejects with file name and line number when
    a database URL is given, and reported in the summary either way.
    """

    def __init__(self, client: IngestClient, settings: Settings, rejects_database_url: str | None) -> None:
        self.client = client
        self.settings = settings
        self.conn = connect(rejects_database_url, autocommit=True) if rejects_database_url else None
        self.file_name: str | None = None

    @contextmanager
    def file(self, file_name: str) -> Iterator[None]:
        self.file_name = file_name
        try:
            yield
        finally:
            self.file_name = None

    def land(self, lines: Sequence[Line]) -> BatchReport:
        parsed = [line for line in lines if line.event is not None]
        report = BatchReport()
        refused = [(line.number, line.error, line.raw) for line in lines if line.event is None]
        if refused and self.conn is not None:
            with (
                self.conn.cursor() as cur,
                cur.copy(
                    "copy raw.rejects (source, reason, record, record_index, file_name, line_number) from stdin"
                ) as copy,
            ):
                for number, reason, raw in refused:
                    copy.write_row((SOURCE, reason, raw, number, self.file_name, number))
        report.rejects += [(number, reason) for number, reason, _ in refused]
        if parsed:
            result = self.client.push_product_events([line.event for line in parsed])
            report.accepted, report.duplicates = result.accepted, result.duplicates
            report.rejects += [(parsed[i].number, reason) for i, reason in result.rejects]
        report.rejects.sort()
        return report

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class ValidationSink:
    """Lands nothing: applies the line checks and the receiver's rules (a dry run, and the first pass of
    ``--strict`` through the receiver, which cannot take back a batch once it was acknowledged)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @contextmanager
    def file(self, file_name: str) -> Iterator[None]:
        yield

    def land(self, lines: Sequence[Line]) -> BatchReport:
        parsed = [line for line in lines if line.event is not None]
        report = BatchReport(rejects=[(line.number, line.error) for line in lines if line.event is None])
        report.rejects += [
            (parsed[i].number, reason) for i, reason in rule_check(self.settings, [p.event for p in parsed])
        ]
        report.rejects.sort()
        return report

    def close(self) -> None:
        pass
