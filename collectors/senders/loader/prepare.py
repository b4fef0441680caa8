"""The CPU-bound stage of loading, run in worker processes for large files: lines in, rows or events out.

Workers import only this module's light dependencies (the line parser, the
receiver's record rules and the client's sampling); results carry line numbers,
and the bytes only of refused lines, so the main process, which keeps each
chunk, mostly just COPYs.

Sampling is the client's :class:`Sampling`, so a file loaded here keeps the
same users as the deployment's senders: a line whose user is outside the sample
is skipped and counted, a kept line gets its rate unless it carries one. Lines
flagged ``dnt`` are not sampled: the record rules refuse them with their reason,
whoever their user is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field

from collectors.ingest import registry, rules
from collectors.ingest.event_lines import LineRefused, ParsedEvent, parse_line
from collectors.ingest.privacy import NO_PRIVACY, Privacy
from collectors.senders.client.sampling import Sampling
from collectors.senders.loader.source import Chunk

SOURCE = registry.PRODUCT_EVENTS.name
EVENT_ROW = rules.row_builder(registry.PRODUCT_EVENTS)  # the receiver's rules for product events
# Batch ids of a file's chunks are derived from the file's name and the chunk's contents, so loading a file again
# gives the same ids and its rejects collapse on (batch id, line) as its events do on their ids.
BATCH_NAMESPACE = uuid.UUID("5d1f3c52-8d0c-4b8e-9a5e-7a1f0c2b9e41")
NO_SAMPLING = Sampling()


@dataclass(frozen=True)
class RuleBounds:
    """The receiver's bounds and privacy rules for product events (from Settings), picklable for worker
    processes."""

    retention_days: int = 90
    accounts_retention_days: int = 90
    max_future_seconds: int = 300
    max_payload_bytes: int = 16 * 1024
    max_line_bytes: int = 1024 * 1024
    privacy: Privacy = NO_PRIVACY

    def kept_line(self, raw: bytes) -> rules.Kept:
        """What raw.rejects keeps of a refused line: the line, its payload cleaned as a row's would be
        (:func:`rules.without_private`); a line that cannot be parsed while payload privacy is configured is
        withheld (only its size and hash are kept)."""
        if not self.privacy.touches_payload:
            return rules.Kept(raw)
        kept = rules.without_private(raw, self.privacy, under="payload")
        if kept is None:
            return rules.Kept.withheld(b"", raw)
        return rules.Kept(kept)  # type: ignore[arg-type]

    def limits(self, retention_days: int | None = None) -> rules.Limits:
        """Limits as of now: fixed per batch, as the receiver fixes them per batch (bounds computed once)."""
        return rules.Limits(
            now=dt.datetime.now(dt.UTC),
            retention_days=self.retention_days if retention_days is None else retention_days,
            max_future_seconds=self.max_future_seconds,
            max_payload_bytes=self.max_payload_bytes,
            privacy=self.privacy,
        )


@dataclass
class PreparedBatch:
    batch_id: str
    lines: int = 0
    blank: int = 0
    conflicts: int = 0
    sampled_out: int = 0  # lines of users outside the sample: skipped
    rejects: list[tuple[int, str, rules.Kept]] = field(default_factory=list)  # (line number, reason, kept)
    event_rows: list[tuple] = field(default_factory=list)  # raw.product_events rows
    event_lines: list[int] = field(default_factory=list)
    account_rows: list[tuple] = field(default_factory=list)  # raw.accounts_created rows
    account_lines: list[int] = field(default_factory=list)
    events: list[ParsedEvent] = field(default_factory=list)  # parsed events (receiver path), with event_lines


def chunk_batch_id(chunk: Chunk) -> str:
    digest = hashlib.sha256(
        chunk.origin.encode() + b"\0" + chunk.first_line.to_bytes(8, "big") + chunk.data
    ).hexdigest()
    return str(uuid.uuid5(BATCH_NAMESPACE, digest))


def _oversized_reject(chunk: Chunk, number: int, bounds: RuleBounds) -> tuple[int, str, rules.Kept]:
    line = chunk.oversized[number]
    reason = f"line is longer than {bounds.max_line_bytes} bytes ({line.size} bytes)"
    return number, reason, rules.Kept(b"", sha256=line.sha256, size=line.size)


def _sampled_out(event: ParsedEvent, sampling: Sampling) -> bool:
    return not event.dnt and not sampling.keep(event)  # type: ignore[arg-type]


def prepare_rows(
    chunk: Chunk, default_user_id: str, bounds: RuleBounds, sampling: Sampling = NO_SAMPLING
) -> PreparedBatch:
    """Parse each line, sample it and apply the receiver's row rules: rows to COPY, or rejects."""
    batch = PreparedBatch(chunk_batch_id(chunk))
    limits = bounds.limits()
    accounts_earliest = bounds.limits(bounds.accounts_retention_days).earliest
    event_row, is_account, account_row = EVENT_ROW, rules.is_account_created, rules.account_row
    batch_uuid = uuid.UUID(batch.batch_id)
    for number, raw in chunk.lines():
        batch.lines += 1
        if number in chunk.oversized:
            batch.rejects.append(_oversized_reject(chunk, number, bounds))
            continue
        if not raw.strip():
            batch.blank += 1
            continue
        try:
            event = parse_line(raw, default_user_id=default_user_id, privacy=bounds.privacy)
            if _sampled_out(event, sampling):
                batch.sampled_out += 1
                continue
            row = event_row(event, limits, batch_uuid)  # type: ignore[arg-type]
            if is_account(row) and row[4].timestamp() < accounts_earliest:
                raise rules.RecordRefused(
                    "account_created is older than the raw.accounts_created retention of "
                    f"{bounds.accounts_retention_days} days"
                )
        except (LineRefused, rules.RecordRefused) as refused:
            batch.rejects.append((number, str(refused), bounds.kept_line(raw)))
            continue
        batch.event_rows.append(row)
        batch.event_lines.append(number)
    _refuse_conflicts(chunk, batch, bounds)
    for row, number in zip(batch.event_rows, batch.event_lines, strict=True):
        if is_account(row):
            batch.account_rows.append(account_row(row))
            batch.account_lines.append(number)
    return batch


def _refuse_conflicts(chunk: Chunk, batch: PreparedBatch, bounds: RuleBounds) -> None:
    """Lines of the chunk with an earlier line's event id and timestamp but other contents: conflicts."""
    conflicts = rules.conflicting_rows(registry.PRODUCT_EVENTS, batch.event_rows)
    if not conflicts:
        return
    spec = registry.PRODUCT_EVENTS
    for position, first in conflicts:
        number = batch.event_lines[position]
        reason = rules.conflict_reason(spec, batch.event_lines[first], unit="line")
        batch.rejects.append((number, reason, bounds.kept_line(chunk.line(number))))
    dropped = {position for position, _ in conflicts}
    batch.event_rows = [row for p, row in enumerate(batch.event_rows) if p not in dropped]
    batch.event_lines = [n for p, n in enumerate(batch.event_lines) if p not in dropped]
    batch.conflicts = len(conflicts)
    batch.rejects.sort(key=lambda r: r[0])


def prepare_events(
    chunk: Chunk, default_user_id: str, bounds: RuleBounds, sampling: Sampling = NO_SAMPLING
) -> PreparedBatch:
    """Parse each line, sample it and check it with the receiver's row rules (so a refused line keeps its file
    and line number); the events that pass are sent, and the receiver checks them again."""
    batch = PreparedBatch(chunk_batch_id(chunk))
    limits = bounds.limits()
    for number, raw in chunk.lines():
        batch.lines += 1
        if number in chunk.oversized:
            batch.rejects.append(_oversized_reject(chunk, number, bounds))
            continue
        if not raw.strip():
            batch.blank += 1
            continue
        try:
            event = parse_line(raw, default_user_id=default_user_id, privacy=bounds.privacy)
            if _sampled_out(event, sampling):
                batch.sampled_out += 1
                continue
            EVENT_ROW(event, limits, batch.batch_id)  # type: ignore[arg-type]
        except (LineRefused, rules.RecordRefused) as refused:
            batch.rejects.append((number, str(refused), bounds.kept_line(raw)))
            continue
        batch.events.append(event)
        batch.event_lines.append(number)
    return batch
