"""The TelemetryIngest gRPC service: parse, validate, land in one transaction, ack after commit."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import psycopg
from google.protobuf.message import DecodeError, Message

from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import metrics, records
from collectors.receiver.records import Limits, Privacy, RecordRefused, TableSpec
from collectors.receiver.writer import BatchWriter, Reject, TableWrite

log = logging.getLogger(__name__)

SERVICE_NAME = "telemetry.v1.TelemetryIngest"


@dataclass(frozen=True)
class Endpoint:
    """One RPC: its request/response types, the repeated field and how each record becomes a row."""

    method: str
    request: type[Message]
    response: type[Message]
    field: str
    spec: TableSpec
    to_row: Callable[[Message, Limits, uuid.UUID], tuple]


ENDPOINTS = (
    Endpoint(
        "PushMinuteSnapshots",
        pb.PushMinuteSnapshotsRequest,
        pb.PushMinuteSnapshotsResponse,
        "snapshots",
        records.MINUTE_SNAPSHOTS,
        records.snapshot_row,
    ),
    Endpoint(
        "PushMessageSamples",
        pb.PushMessageSamplesRequest,
        pb.PushMessageSamplesResponse,
        "samples",
        records.MESSAGE_SAMPLES,
        records.sample_row,
    ),
    Endpoint(
        "PushHostMinutes",
        pb.PushHostMinutesRequest,
        pb.PushHostMinutesResponse,
        "records",
        records.HOST_MINUTES,
        records.host_row,
    ),
    Endpoint(
        "PushProductEvents",
        pb.PushProductEventsRequest,
        pb.PushProductEventsResponse,
        "events",
        records.PRODUCT_EVENTS,
        records.event_row,
    ),
)


def _batch_id(requested: str) -> str:
    """The client's batch id when it is a UUID; otherwise a fresh one."""
    try:
        return str(uuid.UUID(requested))
    except ValueError:
        return str(uuid.uuid4())


class IngestService:
    """Turns one request into table writes and an ack; the gRPC plumbing lives in :func:`generic_handler`."""

    def __init__(self, writer: BatchWriter, settings: Settings) -> None:
        self.writer = writer
        self.settings = settings
        self.privacy = Privacy.from_settings(settings)
        self.kept_bytes = functools.partial(records.kept_bytes, privacy=self.privacy)

    def handle(self, endpoint: Endpoint, payload: bytes, context: grpc.ServicerContext) -> bytes:
        """One batch. Oversized requests never get here: the server's max_receive_message_length
        answers them with RESOURCE_EXHAUSTED."""
        started = time.perf_counter()
        source = endpoint.spec.table
        request = endpoint.request()
        try:
            request.ParseFromString(payload)
        except DecodeError as error:
            metrics.BATCHES.labels(source, "malformed").inc()
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is not a valid {endpoint.request.__name__}: {error}",
            )
        items = getattr(request, endpoint.field)
        if not items:
            metrics.BATCHES.labels(source, "empty").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"empty batch: send at least one of `{endpoint.field}`")
        if len(items) > self.settings.max_batch_records:
            metrics.BATCHES.labels(source, "too_large").inc()
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"batch of {len(items)} records exceeds the limit of {self.settings.max_batch_records}",
            )
        batch_id = _batch_id(request.batch_id)
        writes, rejects = self.validate(endpoint, items, batch_id)
        try:
            outcome = self.writer.write(source, batch_id, writes, rejects)
        except psycopg.OperationalError as error:
            metrics.BATCHES.labels(source, "unavailable").inc()
            log.warning("batch %s not stored, database unavailable: %s", batch_id, error)
            context.abort(grpc.StatusCode.UNAVAILABLE, "warehouse database unavailable; retry later")
        except psycopg.Error as error:
            metrics.BATCHES.labels(source, "failed").inc()
            log.exception("batch %s not stored", batch_id)
            context.abort(grpc.StatusCode.INTERNAL, f"batch not stored: {type(error).__name__}")
        primary = outcome.tables[source]
        ack = pb.IngestAck(
            accepted=primary.accepted,
            duplicates=primary.duplicates,
            rejected=len(outcome.rejects),
            rejects=[pb.RejectedRecord(index=r.index, reason=r.reason) for r in outcome.rejects],
            batch_id=batch_id,
        )
        metrics.BATCHES.labels(source, "stored").inc()
        metrics.RECORDS.labels(source, "accepted").inc(ack.accepted)
        metrics.RECORDS.labels(source, "duplicate").inc(ack.duplicates)
        metrics.RECORDS.labels(source, "rejected").inc(ack.rejected)
        metrics.BATCH_SECONDS.labels(source).observe(time.perf_counter() - started)
        return endpoint.response(ack=ack).SerializeToString()

    def validate(self, endpoint: Endpoint, items, batch_id: str) -> tuple[list[TableWrite], list[Reject]]:
        spec = endpoint.spec
        limits = Limits(
            now=dt.datetime.now(dt.UTC),
            retention_days=self.settings.retention.for_table(spec.table),
            max_future_seconds=self.settings.max_future_seconds,
            max_payload_bytes=self.settings.max_payload_bytes,
            privacy=self.privacy,
        )
        kept_bytes = self.kept_bytes
        write = TableWrite(spec, rows=[], indexes=[], messages=[], kept_bytes=kept_bytes)
        rejects: list[Reject] = []
        to_row = endpoint.to_row
        batch_uuid = uuid.UUID(batch_id)  # rows carry the UUID itself, as binary COPY needs
        for index, item in enumerate(items):
            try:
                row = to_row(item, limits, batch_uuid)
            except RecordRefused as refused:
                rejects.append(Reject(index, str(refused), kept_bytes(item)))
                continue
            write.rows.append(row)
            write.indexes.append(index)
            write.messages.append(item)
        writes = [write]
        if spec is records.PRODUCT_EVENTS:
            accounts = TableWrite(records.ACCOUNTS_CREATED, rows=[], indexes=[], messages=[], kept_bytes=kept_bytes)
            for row, index, item in zip(write.rows, write.indexes, write.messages, strict=True):
                if records.is_account_created(row):
                    accounts.rows.append(records.account_row(row))
                    accounts.indexes.append(index)
                    accounts.messages.append(item)
            writes.append(accounts)
        return writes, rejects


def generic_handler(service: IngestService) -> grpc.GenericRpcHandler:
    """Method handlers that receive raw bytes, so a malformed request is INVALID_ARGUMENT, not INTERNAL."""

    def bind(endpoint: Endpoint) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            lambda payload, context: service.handle(endpoint, payload, context),
            request_deserializer=None,
            response_serializer=None,
        )

    return grpc.method_handlers_generic_handler(SERVICE_NAME, {e.method: bind(e) for e in ENDPOINTS})
