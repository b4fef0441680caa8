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
A spooled batch that fails while the receiver is up (it timed out, say) is
retried on its own back-off and set aside after ``max_spool_attempts``; batches
behind it and new pushes go on meanwhile. Records the receiver had no time for
(``IngestAck.retry_indexes``) are sent again in a batch of their own. When the
spool cannot be written (disk full, read-only, no permission),
:class:`SpoolWriteError` says which records of the push are neither delivered
nor spooled.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import Message
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from collectors.config import check_token
from collectors.ingest import registry
from collectors.ingest.registry import Rpc
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client.sampling import Sampling
from collectors.senders.client.spool import Spool, SpooledBatch, SpoolWriteError

SERVICE = "/telemetry.v1.TelemetryIngest/"
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
}
CONFIGURATION = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
RESEND_ROUNDS = 5  # times records the receiver had no time for are sent again before they are spooled
# gRPC's own answer when the call could not even be sent (metadata it cannot encode): no retry will help
CLIENT_SIDE_DETAILS = ("Invalid metadata",)
# the receiver is at its concurrency cap or the token over its rate (RESOURCE_EXHAUSTED, but not about this
# batch): retry later
BUSY_DETAILS = ("Concurrent RPC limit exceeded", "rate limited")


HEALTH_SERVICE = "telemetry.v1.TelemetryIngest"


def channel_target(target: str | Sequence[str]) -> tuple[str, list[tuple[str, object]]]:
    """The gRPC target and channel options for one receiver (``host:port``) or several (a list, or
    ``host:port,host:port``): several are resolved to addresses and spread with ``round_robin``, which skips a
    receiver whose health check says NOT_SERVING (its database away) or that cannot be reached, so its batches
    go to the others."""
    given = [target] if isinstance(target, str) else list(target)
    targets = [part.strip() for item in given for part in item.split(",") if part.strip()]
    if not targets:
        raise ValueError("no receiver target given")
    if len(targets) == 1:
        return targets[0], []
    addresses: list[str] = []
    for item in targets:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"receiver target {item!r} is not host:port")
        for *_, sockaddr in socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM):
            address = f"[{sockaddr[0]}]:{sockaddr[1]}" if ":" in sockaddr[0] else f"{sockaddr[0]}:{sockaddr[1]}"
            if address not in addresses:
                addresses.append(address)
    scheme = "ipv6" if all(a.startswith("[") for a in addresses) else "ipv4"
    addresses = [a for a in addresses if a.startswith("[") == (scheme == "ipv6")]
    config = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": HEALTH_SERVICE}}
    options: list[tuple[str, object]] = [
        ("grpc.service_config", json.dumps(config)),
        # the receivers' names, not their addresses, for TLS and the :authority header
        ("grpc.default_authority", targets[0]),
    ]
    return f"{scheme}:{','.join(addresses)}", options


# What each raw table's records are sent with: its RPC in the registry (the receiver serves the same table).
KINDS: dict[str, Rpc] = {table.name: table.rpc for table in registry.SENT if table.rpc is not None}
KIND_BY_METHOD: dict[str, Rpc] = {rpc.method: rpc for rpc in KINDS.values()}


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
    refused_batches: int = 0  # spooled batches set aside in the spool's refused/ (refused for good, or given up)
    waiting_batches: int = 0  # spooled batches waiting for their next try (they failed while the receiver was up)
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in the pushed sequence, reason)
    deferred: list[int] = field(default_factory=list)  # indexes neither stored nor refused (no spool): resend them
    sampled_out: int = 0  # product events not sent: their user is outside the sample
    opted_out: int = 0  # product events not sent: their user opted out of tracking

    def add(self, ack: pb.IngestAck, positions: Sequence[int] | int) -> None:
        """Count an ack; ``positions``: the pushed index of each record of the batch (or the first one's)."""

        def where(index: int) -> int:
            return positions + index if isinstance(positions, int) else positions[index]

        self.accepted += ack.accepted
        self.duplicates += ack.duplicates
        self.rejected += ack.rejected
        self.delivered_batches += 1
        self.rejects += [(where(r.index), r.reason) for r in ack.rejects]

    def merge(self, other: PushResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.spooled_batches += other.spooled_batches
        self.delivered_batches += other.delivered_batches
        self.refused_batches += other.refused_batches
        self.waiting_batches += other.waiting_batches
        self.rejects += other.rejects
        self.deferred += other.deferred
        self.sampled_out += other.sampled_out
        self.opted_out += other.opted_out


def _unreachable(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


def _transient(error: BaseException) -> bool:
    if not isinstance(error, grpc.RpcError):
        return False
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.INTERNAL and details.startswith(CLIENT_SIDE_DETAILS):
        return False
    return code in TRANSIENT or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(BUSY_DETAILS))


class IngestClient:
    """Thread-safe client of one receiver. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        target: str | Sequence[str],
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
        max_spool_attempts: int = 10,
        sampling: Sampling | None = None,
    ) -> None:
        check_token(token, "the bearer token")
        target, spread = channel_target(target)
        options = [
            *spread,
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
        self.sampling = sampling or Sampling()  # no sampling: only opted-out events are held back
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        wait = wait_exponential_jitter(multiplier=backoff, max=max_backoff, jitter=backoff)
        self._retry = Retrying(
            stop=stop_after_attempt(attempts), wait=wait, retry=retry_if_exception(_transient), reraise=True
        )
        # a spooled batch is retried at once only when the receiver could not be reached (quick to find out); one
        # that timed out waits for its own next turn instead of holding up the batches behind it
        self._retry_spooled = Retrying(
            stop=stop_after_attempt(attempts), wait=wait, retry=retry_if_exception(_unreachable), reraise=True
        )
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="push") if max_in_flight > 1 else None
        self._spool_lock = threading.Lock()
        self.max_spool_attempts = max_spool_attempts

    # ------------------------------------------------------------------ public API

    def push(self, kind: str, records: Sequence[Message]) -> PushResult:
        """Send ``records`` of ``kind`` (a raw table name, see ``KINDS``); returns the summed acks.

        Batches that cannot be delivered after the retries are spooled (``spooled_batches``)
        when a spool is configured; otherwise the last transient error is raised.
        """
        spec = KINDS[kind]
        result, receiver_down = self._flush_spool()
        down = threading.Event()
        if receiver_down:
            down.set()  # the spool met a receiver that is down: do not wait on it again for each batch
        batches = list(self._batches(spec, records))

        def deliver(batch: tuple[int, bytes, Sequence[Message]]) -> PushResult | SpoolWriteError:
            offset, payload, part = batch
            try:
                return self._deliver(spec, range(offset, offset + len(part)), payload, part, down)
            except SpoolWriteError as unwritable:
                unwritable.unsaved = ((offset, len(part)),)
                return unwritable

        if self._executor is None:
            outcomes = [deliver(batch) for batch in batches]
        else:
            outcomes = list(self._executor.map(deliver, batches))
        unwritable = None
        for outcome in outcomes:
            if isinstance(outcome, SpoolWriteError):
                if unwritable is not None:
                    outcome.unsaved = unwritable.unsaved + outcome.unsaved
                unwritable = outcome
            else:
                result.merge(outcome)
        if unwritable is not None:
            unwritable.result = result
            raise unwritable
        return result

    def push_minute_snapshots(self, records: Sequence[pb.MinuteSnapshot]) -> PushResult:
        return self.push("minute_snapshots", records)

    def push_message_samples(self, records: Sequence[pb.MessageSample]) -> PushResult:
        return self.push("message_samples", records)

    def push_host_minutes(self, records: Sequence[pb.HostMinute]) -> PushResult:
        return self.push("host_minutes", records)

    def push_product_events(self, records: Sequence[pb.ProductEvent]) -> PushResult:
        """Send the events the client's :class:`Sampling` keeps (all but opted-out users' without one);
        positions in the result are positions in ``records``."""
        kept, sampled_out, opted_out = self.sampling.select(records)
        if len(kept) == len(records):
            return self.push("product_events", records)
        result = self.push("product_events", [records[i] for i in kept]) if kept else PushResult()
        result.rejects = [(kept[i], reason) for i, reason in result.rejects]
        result.deferred = [kept[i] for i in result.deferred]
        result.sampled_out, result.opted_out = sampled_out, opted_out
        return result

    def flush_spool(self) -> PushResult:
        """Deliver the spooled batches that are due, oldest first; stops when the receiver is unreachable."""
        return self._flush_spool()[0]

    def _flush_spool(self) -> tuple[PushResult, bool]:
        """(what was delivered, whether the receiver looked unreachable)."""
        result = PushResult()
        if self.spool is None:
            return result, False
        with self._spool_lock:
            for batch in self.spool.batches():
                if not batch.due():
                    result.waiting_batches += 1
                    continue
                try:
                    ack = self._call(batch.method, batch.read(), retrying=self._retry_spooled)
                except IngestError as refused:
                    if refused.code in CONFIGURATION:
                        raise
                    self.spool.set_aside(batch, str(refused))
                    result.refused_batches += 1
                    continue
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        return result, True
                    self._spooled_batch_failed(batch, error, result)
                    continue
                result.add(ack, 0)
                if ack.retry_indexes:
                    self._spool_remainder(batch, ack.retry_indexes)
                self.spool.remove(batch)
        return result, False

    def _spooled_batch_failed(self, batch: SpooledBatch, error: grpc.RpcError, result: PushResult) -> None:
        """The receiver answered, but not with an ack for this batch: try it again later, on its own schedule;
        after ``max_spool_attempts`` set it aside so that it never blocks newer data."""
        assert self.spool is not None
        tried = self.spool.record_attempt(batch)
        if tried.attempts >= self.max_spool_attempts:
            self.spool.set_aside(
                tried, f"not delivered after {tried.attempts} tries; last: {error.code().name}: {error.details()}"
            )
            result.refused_batches += 1
        else:
            result.waiting_batches += 1

    def _spool_remainder(self, batch: SpooledBatch, indexes: Sequence[int]) -> None:
        """Spool, as a batch of its own, the records of a spooled batch that the receiver had no time for."""
        assert self.spool is not None
        kind = KIND_BY_METHOD[batch.method]
        records = getattr(kind.request.FromString(batch.read()), kind.field)
        self.spool.put(batch.method, self._request(kind, [records[i] for i in indexes]))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        self.channel.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _batches(self, spec: Rpc, records: Sequence[Message]) -> Iterable[tuple[int, bytes, Sequence[Message]]]:
        """(offset of the first record, serialized request, its records) for batches under both limits.

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
            yield offset, request, part

    @staticmethod
    def _request(spec: Rpc, records: Sequence[Message]) -> bytes:
        request = spec.request(batch_id=str(uuid.uuid4()))
        getattr(request, spec.field).extend(records)
        return request.SerializeToString()

    def _call(self, method: str, payload: bytes, *, retrying: Retrying | None = None) -> pb.IngestAck:
        try:
            response = (retrying or self._retry)(
                self._calls[method], payload, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            if _transient(error):
                raise
            raise IngestError(error.code(), error.details() or "") from None
        return response.ack

    def _deliver(
        self,
        spec: Rpc,
        positions: Sequence[int],
        payload: bytes,
        records: Sequence[Message],
        down: threading.Event,
    ) -> PushResult:
        """Send one batch (``positions``: the pushed index of each of its ``records``); records the receiver had
        no time for go again in a batch of their own, up to ``RESEND_ROUNDS`` times, then to the spool."""
        result = PushResult()
        for _ in range(RESEND_ROUNDS):
            if down.is_set():
                break
            try:
                ack = self._call(spec.method, payload)
            except grpc.RpcError:
                if self.spool is None:
                    raise
                down.set()
                break
            result.add(ack, positions)
            if not ack.retry_indexes:
                return result
            positions = [positions[i] for i in ack.retry_indexes]
            records = [records[i] for i in ack.retry_indexes]
            payload = self._request(spec, records)
        if self.spool is None:
            result.deferred += positions
            return result
        self.spool.put(spec.method, payload)
        result.spooled_batches += 1
        return result
