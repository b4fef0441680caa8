"""The CPU-bound stage of loading, run in worker processes for large files: lines in, rows or events out.

Workers import only this module's light dependencies (the line parser and the
receiver's record rules); results carry line numbers, and the bytes only of
refused lines, so the main process, which keeps each chunk, mostly just COPYs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from collectors.loader.lines import LineRefused, ParsedEvent, parse_line
from collectors.loader.source import Chunk
from collectors.receiver import records

SOURCE = records.PRODUCT_EVENTS.table


@dataclass(frozen=True)
class RuleBounds:
    """The receiver's bounds and privacy rules for product events (from Settings), picklable for worker
    processes."""

    retention_days: int = 90
    max_future_seconds: int = 300
    max_payload_bytes: int = 16 * 1024
    privacy: records.Privacy = records.NO_PRIVACY

    def kept_line(self, raw: bytes) -> bytes:
        """What raw.rejects keeps of a refused line: the line, without excluded payload fields (nothing when
        it cannot be parsed yet names one)."""
        if not self.privacy.payload_exclude:
            return raw
        kept = records.without_excluded(raw, self.privacy, under="payload")
        return b"" if kept is None else kept  # type: ignore[return-value]

    def limits(self) -> records.Limits:
        """Limits as of now: fixed per batch, as the receiver fixes them per batch (bounds computed once)."""
        return records.Limits(
            now=dt.datetime.now(dt.UTC),
            retention_days=self.retention_days,
            max_future_seconds=self.max_future_seconds,
            max_payload_bytes=self.max_payload_bytes,
            privacy=self.privacy,
        )


@dataclass
class PreparedBatch:
    batch_id: str
    lines: int = 0
    blank: int = 0
    rejects: list[tuple[int, str, bytes]] = field(default_factory=list)  # (line number, reason, the line)
    event_rows: list[tuple] = field(default_factory=list)  # raw.product_events rows
    event_lines: list[int] = field(default_factory=list)
    account_rows: list[tuple] = field(default_factory=list)  # raw.accounts_created rows
    account_lines: list[int] = field(default_factory=list)
    events: list[ParsedEvent] = field(default_factory=list)  # parsed events (receiver path), with event_lines


def prepare_rows(chunk: Chunk, default_user_id: str, bounds: RuleBounds) -> PreparedBatch:
    """Parse each line and apply the receiver's ``records.event_row``: rows to COPY, or rejects."""
    batch = PreparedBatch(str(uuid.uuid4()))
    limits = bounds.limits()
    event_row, is_account, account_row = records.event_row, records.is_account_created, records.account_row
    batch_uuid = uuid.UUID(batch.batch_id)
    for number, raw in chunk.lines():
        batch.lines += 1
        if not raw.strip():
            batch.blank += 1
            continue
        try:
            row = event_row(parse_line(raw, default_user_id=default_user_id), limits, batch_uuid)  # type: ignore[arg-type]
        except (LineRefused, records.RecordRefused) as refused:
            batch.rejects.append((number, str(refused), bounds.kept_line(raw)))
            continue
        batch.event_rows.append(row)
        batch.event_lines.append(number)
        if is_account(row):
            batch.account_rows.append(account_row(row))
            batch.account_lines.append(number)
    return batch


def prepare_events(chunk: Chunk, default_user_id: str, bounds: RuleBounds) -> PreparedBatch:
    """Parse each line and check it with the receiver's ``records.event_row`` (so a refused line keeps its
    file and line number); the events that pass are sent, and the receiver checks them again."""
    batch = PreparedBatch(str(uuid.uuid4()))
    limits = bounds.limits()
    for number, raw in chunk.lines():
        batch.lines += 1
        if not raw.strip():
            batch.blank += 1
            continue
        try:
            event = parse_line(raw, default_user_id=default_user_id)
            records.event_row(event, limits, batch.batch_id)  # type: ignore[arg-type]
        except (LineRefused, records.RecordRefused) as refused:
            batch.rejects.append((number, str(refused), bounds.kept_line(raw)))
            continue
        batch.events.append(event)
        batch.event_lines.append(number)
    return batch
