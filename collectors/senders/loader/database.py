"""The loader's direct path: rows that passed the receiver's rules COPYed with the receiver's writer, one
transaction per file; and the rejects of the receiver path, stored with their file name and line. Needs psycopg
(the warehouse side of the install)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from collectors.config import Settings
from collectors.ingest import registry
from collectors.ingest.writer import BatchWriter, Reject, TableWrite
from collectors.senders.client.sampling import Sampling
from collectors.senders.loader.prepare import SOURCE, PreparedBatch, prepare_rows
from collectors.senders.loader.sinks import BatchReport, ChunkLines, rule_bounds
from collectors.senders.loader.source import Chunk
from collectors.warehouse.db import connect


class _OneConnection:
    """The pool interface BatchWriter needs, over one connection: each batch becomes a savepoint of the
    file's transaction, so a file lands whole or (``--strict``, errors) not at all."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        yield self.conn


class DatabaseSink:
    """COPYs rows that passed the receiver's rules with the receiver's writer, one transaction per file."""

    def __init__(self, database_url: str, settings: Settings, *, default_user_id: str = "") -> None:
        self.bounds = rule_bounds(settings)
        self.prepare = functools.partial(
            prepare_rows, default_user_id=default_user_id, bounds=self.bounds, sampling=Sampling.from_settings(settings)
        )
        self.conn = connect(database_url, autocommit=True)
        self.writer = BatchWriter(_OneConnection(self.conn), max_reject_bytes=settings.max_reject_bytes)
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

    def land(self, chunk: Chunk, batch: PreparedBatch) -> BatchReport:
        writes = []
        for spec, rows, lines in (
            (registry.PRODUCT_EVENTS, batch.event_rows, batch.event_lines),
            (registry.ACCOUNTS_CREATED, batch.account_rows, batch.account_lines),
        ):
            originals = ChunkLines(chunk, lines, self.bounds)
            writes.append(TableWrite(spec, rows, lines, originals, originals.keep))  # type: ignore[arg-type]
        refused = [Reject.of(number, reason, kept) for number, reason, kept in batch.rejects]
        outcome = self.writer.write(
            SOURCE, batch.batch_id, writes, refused, conflicts=batch.conflicts, file_name=self.file_name
        )
        table = outcome.tables[SOURCE]
        return BatchReport(table.accepted, table.duplicates, sorted((r.index, r.reason) for r in outcome.rejects))

    def close(self) -> None:
        self.conn.close()


class RejectsWriter:
    """raw.rejects rows for the lines the receiver path refused before sending, with file name and line."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.conn = connect(database_url, autocommit=True)
        self.writer = BatchWriter(_OneConnection(self.conn), max_reject_bytes=settings.max_reject_bytes)

    def write(self, batch: PreparedBatch, file_name: str | None) -> None:
        refused = [Reject.of(number, reason, kept) for number, reason, kept in batch.rejects]
        self.writer.write(SOURCE, batch.batch_id, [], refused, file_name=file_name)

    def close(self) -> None:
        self.conn.close()
