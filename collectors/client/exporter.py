"""IngestClient: what every sender (host collector, loader, simulator, apps) uses to reach the receiver.

It cuts records into batches under the receiver's limits, sends each batch
with a bearer token, retries transient failures with exponential backoff and
jitter, and, when the receiver or its database stays unavailable, writes the
batch to an on-disk :class:`Spool` that is replayed before the next push (or by
``flush_spool``). A batch is forgotten only after the receiver acknowledged it,
and the receiver acknowledges only after commit: nothing acknowledged is lost,
and replays are harmless because the warehouse deduplicates on natural keys.
A spooled batch the receiver refuses for good is set aside (``Spool.set_aside``)
instead of blocking the spool, except on UNAUTHENTICATED/PERMISSION_DENIED: a
wrong token is the sender's configuration, and every batch would be refused.
When the spool's disk is full, :class:`SpoolFullError` says which records of the
push are neither delivered nor spooled.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import Message
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from collectors.client.spool import Spool, SpooledBatch, SpoolFullError
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

SERVICE = "/telemetry.v1.TelemetryIngest/"
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
}
CONFIGURATION = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@dataclass(frozen=True)
class Kind:
    method: str
    request: type[Message]
    response: type[Message]
    field: str


KINDS: dict[str, Kind] = {
    "minute_snapshots": Kind(
        "PushMinuteSnapshots", pb.PushMinuteSnapshotsRequest, pb.PushMinuteSnapshotsResponse, "snapshots"
    ),
    "message_samples": Kind(
        "PushMessageSamples", pb.PushMessageSamplesRequest, pb.PushMessageSamplesResponse, "samples"
    ),
    "host_minutes": Kind("PushHostMinutes", pb.PushHostMinutesRequest, pb.PushHostMinutesResponse, "records"),
    "product_events": Kind("PushProductEvents", pb.PushProductEventsRequest, pb.PushProductEventsResponse, "events"),
}
KIND_BY_METHOD = {kind.method: kind for kind in KINDS.values()}


class IngestError(Exception):
    """The receiver refused a batch for good (bad token, malformed or oversized batch): fix and resend."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class PushResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    spooled_batches: int = 0
    delivered_batches: int = 0
    refused_batches: int = 0  # spooled batches the receiver refused for good, moved to the spool's refused/
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in the pushed sequence, reason)

    def add(self, ack: pb.IngestAck, offset: int) -> None:
        self.accepted += ack.accepted
        self.duplicates += ack.duplicates
        self.rejected += ack.rejected
        self.delivered_batches += 1
        self.rejects += [(offset + r.index, r.reason) for r in ack.rejects]

    def merge(self, other: PushResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.spooled_batches += other.spooled_batches
        self.delivered_batches += other.delivered_batches
        self.refused_batches += other.refused_batches
        self.rejects += other.rejects


def _transient(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in TRANSIENT


class IngestClient:
    """Thread-safe client of one receiver. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        spool_dir: Path | None = None,
        root_certificates: bytes | None = None,
        max_batch_records: int = 2000,
        max_batch_bytes: int = 4 * 1024 * 1024 - 64 * 1024,
        max_in_flight: int = 1,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", max_batch_bytes + 64 * 1024),
            # reconnect to a restarted receiver on the same schedule as the retries (gRPC's default grows to 120 s)
            ("grpc.initial_reconnect_backoff_ms", max(1, int(backoff * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(backoff * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(max_backoff * 1000))),
        ]
        if root_certificates is not None:
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._calls = {
            kind.method: self.channel.unary_unary(
                SERVICE + kind.method, request_serializer=None, response_deserializer=kind.response.FromString
            )
            for kind in KINDS.values()
        }
        self.spool = Spool(spool_dir) if spool_dir is not None else None
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self._retry = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=backoff, max=max_backoff, jitter=backoff),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="push") if max_in_flight > 1 else None
        self._spool_lock = threading.Lock()

    # ------------------------------------------------------------------ public API

    def push(self, kind: str, records: Sequence[Message]) -> PushResult:
        """Send ``records`` of ``kind`` (a raw table name, see ``KINDS``); returns the summed acks.

        Batches that cannot be delivered after the retries are spooled (``spooled_batches``)
        when a spool is configured; otherwise the last transient error is raised.
        """
        spec = KINDS[kind]
        result = self.flush_spool()
        down = threading.Event()
        if self.spool is not None and len(self.spool):
            down.set()  # the spool did not drain: keep order, do not wait on a receiver that is down
        batches = list(self._batches(spec, records))

        def deliver(batch: tuple[int, bytes, int]) -> PushResult | SpoolFullError:
            try:
                return self._deliver(spec, batch[0], batch[1], down)
            except SpoolFullError as full:
                full.unsaved = ((batch[0], batch[2]),)
                return full

        if self._executor is None:
            outcomes = [deliver(batch) for batch in batches]
        else:
            outcomes = list(self._executor.map(deliver, batches))
        full = None
        for outcome in outcomes:
            if isinstance(outcome, SpoolFullError):
                if full is not None:
                    outcome.unsaved = full.unsaved + outcome.unsaved
                full = outcome
            else:
                result.merge(outcome)
        if full is not None:
            full.result = result
            raise full
        return result

    def push_minute_snapshots(self, records: Sequence[pb.MinuteSnapshot]) -> PushResult:
        return self.push("minute_snapshots", records)

    def push_message_samples(self, records: Sequence[pb.MessageSample]) -> PushResult:
        return self.push("message_samples", records)

    def push_host_minutes(self, records: Sequence[pb.HostMinute]) -> PushResult:
        return self.push("host_minutes", records)

    def push_product_events(self, records: Sequence[pb.ProductEvent]) -> PushResult:
        return self.push("product_events", records)

    def flush_spool(self) -> PushResult:
        """Deliver spooled batches oldest first; stops at the first that still cannot be delivered."""
        result = PushResult()
        if self.spool is None:
            return result
        with self._spool_lock:
            for batch in self.spool.batches():
                try:
                    ack = self._send_spooled(batch)
                except IngestError as refused:
                    if refused.code in CONFIGURATION:
                        raise
                    self.spool.set_aside(batch, str(refused))
                    result.refused_batches += 1
                    continue
                if ack is None:
                    break
                result.add(ack, 0)
                self.spool.remove(batch)
        return result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        self.channel.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _batches(self, spec: Kind, records: Sequence[Message]) -> Iterable[tuple[int, bytes, int]]:
        """(offset of the first record, serialized request, records) for batches under both limits.

        Takes ``max_batch_records`` at a time and halves a slice only when its request is over
        ``max_batch_bytes`` (sizes are computed in C, not per record in Python). A single record
        over the limit goes alone, and the receiver refuses it with RESOURCE_EXHAUSTED.
        """
        pending = [(start, records[start : start + self.max_batch_records])
                   for start in range(0, len(records), self.max_batch_records)]  # fmt: skip
        pending.reverse()
        while pending:
            offset, part = pending.pop()
            request = self._request(spec, part)
            if len(request) > self.max_batch_bytes and len(part) > 1:
                half = len(part) // 2
                pending += [(offset + half, part[half:]), (offset, part[:half])]
                continue
            yield offset, request, len(part)

    @staticmethod
    def _request(spec: Kind, records: Sequence[Message]) -> bytes:
        request = spec.request(batch_id=str(uuid.uuid4()))
        getattr(request, spec.field).extend(records)
        return request.SerializeToString()

    def _call(self, method: str, payload: bytes) -> pb.IngestAck:
        try:
            response = self._retry(self._calls[method], payload, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            if _transient(error):
                raise
            raise IngestError(error.code(), error.details() or "") from None
        return response.ack

    def _deliver(self, spec: Kind, offset: int, payload: bytes, down: threading.Event) -> PushResult:
        result = PushResult()
        if not down.is_set():
            try:
                result.add(self._call(spec.method, payload), offset)
                return result
            except grpc.RpcError:
                if self.spool is None:
                    raise
                down.set()
        assert self.spool is not None
        self.spool.put(spec.method, payload)
        result.spooled_batches += 1
        return result

    def _send_spooled(self, batch: SpooledBatch) -> pb.IngestAck | None:
        try:
            return self._call(batch.method, batch.read())
        except grpc.RpcError:
            return None
