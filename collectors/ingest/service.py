"""The ingest core every receiver transport shares: parse a batch, validate its records, land it, build the ack.

A transport (the gRPC server, later HTTP) hands a batch to :meth:`IngestService.ingest` in a worker thread and
maps :class:`BatchRefused` to its own status codes. Nothing here knows about gRPC or sockets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import enum
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psycopg
from google.protobuf.message import DecodeError, Message

from collectors.config import Settings
from collectors.ingest import metrics, registry, rules
from collectors.ingest.privacy import Privacy
from collectors.ingest.registry import RawTable, Rpc
from collectors.ingest.rules import Limits, RecordRefused, RowBuilder
from collectors.ingest.writer import BatchWriter, Reject, TableWrite
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = "telemetry.v1.TelemetryIngest"
# After a batch this large, give the memory it took back to the system: glibc keeps freed memory in per-thread
# arenas, so a few large batches would otherwise leave the receiver's RSS at their peak for good.
RETURN_MEMORY_AFTER_BYTES = 1 << 20


def _malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return lambda: None
    return lambda: trim(0)


return_free_memory = _malloc_trim()


class Refusal(enum.Enum):
    """Why a whole batch was refused; each transport has its status code for each."""

    MALFORMED = "malformed"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class BatchRefused(Exception):
    """Nothing of the batch was stored; ``str(error)`` says why in words a sender can act on."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class Endpoint:
    """One RPC of the registry: the table it lands, its request/response types, its list field, its row builder."""

    table: RawTable

    @property
    def rpc(self) -> Rpc:
        assert self.table.rpc is not None
        return self.table.rpc

    @property
    def method(self) -> str:
        return self.rpc.method

    @property
    def request(self) -> type[Message]:
        return self.rpc.request

    @property
    def response(self) -> type[Message]:
        return self.rpc.response

    @property
    def field(self) -> str:
        return self.rpc.field

    @property
    def to_row(self) -> RowBuilder:
        return rules.row_builder(self.table)


ENDPOINTS = tuple(Endpoint(table) for table in registry.SENT)


def _batch_id(requested: str) -> str:
    """The client's batch id when it is a UUID; otherwise a fresh one."""
    try:
        return str(uuid.UUID(requested))
    except ValueError:
        return str(uuid.uuid4())


@dataclass
class Validated:
    """A batch after the record rules: what to write, what was refused, how many of those were conflicts."""

    writes: list[TableWrite]
    rejects: list[Reject]
    conflicts: int = 0


class IngestService:
    """Validates and lands batches; thread-safe (one call per worker thread)."""

    def __init__(self, writer: BatchWriter, settings: Settings) -> None:
        self.writer = writer
        self.settings = settings
        self.privacy = Privacy.from_settings(settings)
        self.keep = functools.partial(rules.kept_record, privacy=self.privacy)

    def limits(self, table: str, now: dt.datetime) -> Limits:
        s = self.settings
        return Limits(
            now=now,
            retention_days=s.retention.for_table(table),
            max_future_seconds=s.max_future_seconds,
            max_payload_bytes=s.max_payload_bytes,
            privacy=self.privacy,
            max_ids_per_list=s.max_ids_per_list,
        )

    def ingest(self, endpoint: Endpoint, payload: bytes, *, deadline: float | None = None) -> pb.IngestAck:
        """One serialized request: parse, validate, land; the ack once committed. Raises :class:`BatchRefused`."""
        source = endpoint.table.name
        request = endpoint.request()
        try:
            request.ParseFromString(payload)
        except DecodeError as error:
            metrics.BATCHES.labels(source, "malformed").inc()
            raise BatchRefused(
                Refusal.MALFORMED, f"request is not a valid {endpoint.request.__name__}: {error}"
            ) from None
        try:
            return self.ingest_records(endpoint, getattr(request, endpoint.field), request.batch_id, deadline=deadline)
        finally:
            if len(payload) >= RETURN_MEMORY_AFTER_BYTES:
                del request
                return_free_memory()

    def ingest_records(
        self,
        endpoint: Endpoint,
        items: Sequence[Message | None],
        batch_id: str,
        *,
        deadline: float | None = None,
        originals: Sequence[bytes] | None = None,
        refused: Mapping[int, str] | None = None,
    ) -> pb.IngestAck:
        """Validate and land ``items``; ``originals``: each record as it was sent (JSON, say), which is what
        rejects keep of it; ``refused``: records the transport could not even decode (``None`` in ``items``),
        with the reason."""
        started = time.perf_counter()
        source = endpoint.table.name
        if not items:
            metrics.BATCHES.labels(source, "empty").inc()
            raise BatchRefused(Refusal.EMPTY, f"empty batch: send at least one of `{endpoint.field}`")
        if len(items) > self.settings.max_batch_records:
            metrics.BATCHES.labels(source, "too_large").inc()
            raise BatchRefused(
                Refusal.TOO_LARGE,
                f"batch of {len(items)} records exceeds the limit of {self.settings.max_batch_records}",
            )
        batch_id = _batch_id(batch_id)
        validated = self.validate(endpoint, items, batch_id, originals=originals, refused=refused)
        try:
            outcome = self.writer.write(
                source,
                batch_id,
                validated.writes,
                validated.rejects,
                deadline=deadline,
                conflicts=validated.conflicts,
            )
        except psycopg.OperationalError as error:
            metrics.BATCHES.labels(source, "unavailable").inc()
            log.warning("batch %s not stored, database unavailable: %s", batch_id, error)
            raise BatchRefused(Refusal.UNAVAILABLE, "warehouse database unavailable; retry later") from None
        except psycopg.Error as error:
            metrics.BATCHES.labels(source, "failed").inc()
            log.exception("batch %s not stored", batch_id)
            raise BatchRefused(Refusal.FAILED, f"batch not stored: {type(error).__name__}") from None
        primary = outcome.tables[source]
        ack = pb.IngestAck(
            accepted=primary.accepted,
            duplicates=primary.duplicates,
            rejected=len(outcome.rejects),
            rejects=[pb.RejectedRecord(index=r.index, reason=r.reason) for r in outcome.rejects],
            batch_id=batch_id,
            retry_indexes=outcome.deferred,
        )
        metrics.BATCHES.labels(source, "stored").inc()
        metrics.RECORDS.labels(source, "accepted").inc(ack.accepted)
        metrics.RECORDS.labels(source, "duplicate").inc(ack.duplicates)
        metrics.RECORDS.labels(source, "rejected").inc(ack.rejected)
        metrics.RECORDS.labels(source, "deferred").inc(len(outcome.deferred))
        metrics.BATCH_SECONDS.labels(source).observe(time.perf_counter() - started)
        return ack

    def validate(
        self,
        endpoint: Endpoint,
        items: Sequence[Message | None],
        batch_id: str,
        *,
        originals: Sequence[bytes] | None = None,
        refused: Mapping[int, str] | None = None,
    ) -> Validated:
        spec = endpoint.table
        now = dt.datetime.now(dt.UTC)
        limits = self.limits(spec.name, now)
        if originals is None:
            keep, sent = self.keep, items
        else:
            keep, sent = functools.partial(rules.kept_json, table=spec, privacy=self.privacy), originals
        write = TableWrite(spec, rows=[], indexes=[], messages=[], keep=keep)
        rejects: list[Reject] = []
        to_row = endpoint.to_row
        batch_uuid = uuid.UUID(batch_id)  # rows carry the UUID itself, as binary COPY needs
        for index, item in enumerate(items):
            if item is None:
                rejects.append(Reject.of(index, (refused or {}).get(index, "not a record"), keep(sent[index])))
                continue
            try:
                row = to_row(item, limits, batch_uuid)
            except RecordRefused as refusal:
                rejects.append(Reject.of(index, str(refusal), keep(sent[index])))
                continue
            write.rows.append(row)
            write.indexes.append(index)
            write.messages.append(sent[index])  # type: ignore[attr-defined]
        conflicts = rules.conflicting_rows(spec, write.rows)
        if conflicts:
            for position, first in conflicts:
                rejects.append(write.reject(position, rules.conflict_reason(spec, write.indexes[first])))
            write = write.only(set(write.indexes) - {write.indexes[p] for p, _ in conflicts})
        validated = Validated([write], rejects, len(conflicts))
        if spec is registry.PRODUCT_EVENTS:
            self._with_accounts(validated, self.limits(registry.ACCOUNTS_CREATED.name, now))
        validated.rejects.sort(key=lambda r: r.index)
        return validated

    @staticmethod
    def _with_accounts(validated: Validated, limits: Limits) -> None:
        """Add the raw.accounts_created rows of the batch's ``account_created`` events. An event whose account row
        cannot be kept (older than that table's retention) is refused whole: both rows land, or neither."""
        events = validated.writes[0]
        accounts = TableWrite(registry.ACCOUNTS_CREATED, rows=[], indexes=[], messages=[], keep=events.keep)
        refused: set[int] = set()
        earliest = limits.earliest
        for position, row in enumerate(events.rows):
            if not rules.is_account_created(row):
                continue
            account = rules.account_row(row)
            if account[2].timestamp() < earliest:
                reason = (
                    f"account_created is older than the raw.accounts_created retention of {limits.retention_days} days"
                )
                validated.rejects.append(events.reject(position, reason))
                refused.add(events.indexes[position])
                continue
            accounts.rows.append(account)
            accounts.indexes.append(events.indexes[position])
            accounts.messages.append(events.messages[position])  # type: ignore[attr-defined]
        if refused:
            events = events.only(set(events.indexes) - refused)
        validated.writes = [events, accounts]
