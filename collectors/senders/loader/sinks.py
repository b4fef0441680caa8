"""Where prepared batches land: through the receiver, or nowhere (a dry run); straight into PostgreSQL is
``collectors.senders.loader.database``, imported only when used, so a sender-only install (no psycopg) loads
through the receiver.

Each sink names its ``prepare`` stage (a picklable function of a chunk of
lines, run in worker processes for large files) and lands what it returns,
reporting per line what happened, so diagnostics always name the line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from collectors.config import Settings
from collectors.ingest import registry, rules
from collectors.ingest.privacy import Privacy
from collectors.senders.client import IngestClient, Sampling
from collectors.senders.loader.prepare import SOURCE, PreparedBatch, RuleBounds, prepare_events, prepare_rows
from collectors.senders.loader.source import Chunk


@dataclass
class BatchReport:
    accepted: int = 0
    duplicates: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class Sink(Protocol):
    """Where a file's batches land; ``file`` wraps one file (its transaction, for the database)."""

    prepare: Callable[[Chunk], PreparedBatch]

    def file(self, file_name: str) -> AbstractContextManager[None]: ...

    def land(self, chunk: Chunk, batch: PreparedBatch) -> BatchReport: ...

    def close(self) -> None: ...


def rule_bounds(settings: Settings) -> RuleBounds:
    return RuleBounds(
        retention_days=settings.retention.for_table(SOURCE),
        accounts_retention_days=settings.retention.for_table(registry.ACCOUNTS_CREATED.name),
        max_future_seconds=settings.max_future_seconds,
        max_payload_bytes=settings.max_payload_bytes,
        max_line_bytes=settings.max_line_bytes,
        privacy=Privacy.from_settings(settings),
    )


class ChunkLines:
    """The writer's per-row ``messages`` of a batch: the line numbers; a refused row's line is read from the
    chunk only then (rarely)."""

    def __init__(self, chunk: Chunk, numbers: list[int], bounds: RuleBounds) -> None:
        self.chunk = chunk
        self.numbers = numbers
        self.bounds = bounds

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, i: int) -> int:
        return self.numbers[i]

    def keep(self, number: int) -> rules.Kept:
        return self.bounds.kept_line(self.chunk.line(number))


class ReceiverSink:
    """Sends events through the receiver.

    Every line is checked with the receiver's own rules before it is sent, under
    ``settings`` (which should match the receiver's). Refused lines are stored
    in raw.rejects with file name and line number when a database URL is
    given, and reported in the summary either way; the receiver checks again
    and stores (without file and line) anything it still refuses, e.g. when its
    settings are stricter.
    """

    def __init__(
        self,
        client: IngestClient,
        rejects_database_url: str | None,
        settings: Settings,
        *,
        default_user_id: str = "",
    ) -> None:
        self.prepare = functools.partial(
            prepare_events,
            default_user_id=default_user_id,
            bounds=rule_bounds(settings),
            sampling=Sampling.from_settings(settings),
        )
        self.client = client
        self.rejects = None
        if rejects_database_url:
            from collectors.senders.loader.database import RejectsWriter

            self.rejects = RejectsWriter(rejects_database_url, settings)
        self.file_name: str | None = None

    @contextmanager
    def file(self, file_name: str) -> Iterator[None]:
        self.file_name = file_name
        try:
            yield
        finally:
            self.file_name = None

    def land(self, chunk: Chunk, batch: PreparedBatch) -> BatchReport:
        report = BatchReport(rejects=[(number, reason) for number, reason, _ in batch.rejects])
        if batch.rejects and self.rejects is not None:
            self.rejects.write(batch, self.file_name)
        if batch.events:
            result = self.client.push_product_events([event.to_proto() for event in batch.events])
            report.accepted, report.duplicates = result.accepted, result.duplicates
            report.rejects += [(batch.event_lines[i], reason) for i, reason in result.rejects]
        report.rejects.sort()
        return report

    def close(self) -> None:
        if self.rejects is not None:
            self.rejects.close()
        self.client.close()


class ValidationSink:
    """Lands nothing: applies the line checks and the receiver's rules (a dry run, and the first pass of
    ``--strict`` through the receiver, which cannot take back a batch once it was acknowledged)."""

    def __init__(self, settings: Settings, *, default_user_id: str = "") -> None:
        self.prepare = functools.partial(
            prepare_rows,
            default_user_id=default_user_id,
            bounds=rule_bounds(settings),
            sampling=Sampling.from_settings(settings),
        )

    def file(self, file_name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def land(self, chunk: Chunk, batch: PreparedBatch) -> BatchReport:
        return BatchReport(rejects=[(number, reason) for number, reason, _ in batch.rejects])

    def close(self) -> None:
        pass
