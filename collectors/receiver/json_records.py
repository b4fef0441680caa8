"""JSON bodies of the HTTP receiver, turned into the records the ingest core validates.

Each shape a sender already speaks has a decoder: the game server's own report (``POST /api/v1/telemetry``),
status-im telemetry's received messages (``POST /received-messages``), ``telemetry_event_v1`` objects
(``POST /api/v1/events``, as the JSONL loader reads them), and the JSON form of every gRPC record (field names
as in ``ingest.proto``). A decoder never refuses a batch for one bad element: it returns the element's bytes
with the reason, and the ingest core stores it in raw.rejects with the rest of the batch's rejects.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from google.protobuf import json_format
from google.protobuf.message import Message

from collectors.ingest import registry
from collectors.ingest.event_lines import LineRefused, parse_line, parse_timestamp
from collectors.ingest.privacy import NO_PRIVACY, Privacy
from collectors.ingest.registry import RawTable
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import json_schemas


class BodyRefused(ValueError):
    """The whole body cannot be read (not JSON, not an array, not gzip); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Decoded:
    """One body's records: ``items[i]`` is the record of element ``i`` or None when it was refused (with
    ``refused[i]``, the reason); ``originals[i]`` the element's JSON bytes as sent."""

    items: list[Message | None] = field(default_factory=list)
    originals: list[bytes] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)

    def add(self, original: bytes, record: Message | None, reason: str | None = None) -> None:
        if record is None:
            self.refused[len(self.items)] = reason or "not a record"
        self.items.append(record)
        self.originals.append(original)


_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_object = msgspec.json.Decoder(dict).decode


def gunzip(body: bytes, limit: int) -> bytes:
    """The body of a ``Content-Encoding: gzip`` request, refused (413) when it expands past ``limit``."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise BodyRefused(f"the body is not valid gzip: {error}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyRefused(f"the body expands past {limit} bytes", status=413)
    return data


def json_elements(body: bytes, *, ndjson: bool = False, single_object: bool = False) -> list[bytes]:
    """The elements of a JSON array body (or the lines of NDJSON; or one object, when ``single_object``)."""
    if ndjson:
        return [line for line in (piece.strip() for piece in body.split(b"\n")) if line]
    stripped = body.lstrip()
    if single_object and stripped.startswith(b"{"):
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as error:
            raise BodyRefused(f"the body is not valid JSON: {error}") from None
        return [body.strip()]
    try:
        return [bytes(raw) for raw in _elements(body)]
    except msgspec.ValidationError:
        raise BodyRefused("the body must be a JSON array" + (" or object" if single_object else "")) from None
    except msgspec.DecodeError as error:
        raise BodyRefused(f"the body is not valid JSON: {error}") from None


def _as_object(raw: bytes) -> dict | str:
    """The element as a dict, or the reason it is not one."""
    try:
        value = _object(raw)
    except msgspec.ValidationError:
        return "the element must be a JSON object"
    except (msgspec.DecodeError, RecursionError) as error:
        return f"the element is not valid JSON: {error}"
    return value


def _stamp(target: object, value: object, name: str) -> str | None:
    """Set the Timestamp ``target`` from an ISO 8601 string; the reason when it is not one."""
    if not isinstance(value, str):
        return f"{name} must be an ISO 8601 time (a string)"
    try:
        moment = parse_timestamp(value)
    except LineRefused as refused:
        return str(refused)
    target.FromDatetime(moment.astimezone(dt.UTC))  # type: ignore[attr-defined]
    return None


def server_reports(elements: list[bytes]) -> Decoded:
    """``POST /api/v1/telemetry``: a game server's report (``server_id``, ``timestamp`` and its sections), kept
    whole; its known fields are checked by the registry's rules."""
    decoded = Decoded()
    for raw in elements:
        value = _as_object(raw)
        if isinstance(value, str):
            decoded.add(raw, None, value)
            continue
        report = pb.ServerReport(document_json=raw.decode("utf-8", "replace"))
        server_id = value.get("server_id", "")
        if not isinstance(server_id, str):
            decoded.add(raw, None, "server_id must be a string")
            continue
        report.server_id = server_id
        if "timestamp" in value:
            reason = _stamp(report.timestamp, value["timestamp"], "timestamp")
            if reason:
                decoded.add(raw, None, reason)
                continue
        decoded.add(raw, report)
    return decoded


STATUS_IM_FIELDS = {"chatId": str, "messageHash": str, "messageId": str, "receiverKeyUID": str, "topic": str}


def received_messages(elements: list[bytes]) -> Decoded:
    """``POST /received-messages``: status-im telemetry's received messages (``chatId``, ``messageHash``,
    ``messageId``, ``receiverKeyUID``, ``nodeName``, ``sentAt`` in unix seconds, ``topic``) as message samples:
    the message id, channel, receiving client, send time, topic (as its bytes) and hash (as the envelope id).
    ``nodeName`` names the client's node and is not kept; the receiver stamps when it got the sample."""
    decoded = Decoded()
    for raw in elements:
        value = _as_object(raw)
        if isinstance(value, str):
            decoded.add(raw, None, value)
            continue
        wrong = [name for name, kind in STATUS_IM_FIELDS.items() if name in value and not isinstance(value[name], kind)]
        sent_at = value.get("sentAt")
        if wrong:
            decoded.add(raw, None, f"{wrong[0]} must be a string")
            continue
        if sent_at is not None and (isinstance(sent_at, bool) or not isinstance(sent_at, int)):
            decoded.add(raw, None, "sentAt must be a whole number of seconds since 1970")
            continue
        sample = pb.MessageSample(
            message_id=value.get("messageId", ""),
            channel_id=value.get("chatId", ""),
            receiver_public_key=value.get("receiverKeyUID", ""),
            topics=value.get("topic", "").encode(),
            envelope_id=value.get("messageHash", ""),
        )
        if sent_at is not None:
            if not -(2**62) < sent_at < 2**62:
                decoded.add(raw, None, "sentAt is out of range")
                continue
            sample.sent_at.seconds = sent_at
        decoded.add(raw, sample)
    return decoded


def product_events(elements: list[bytes], privacy: Privacy = NO_PRIVACY) -> Decoded:
    """``POST /api/v1/events``: ``telemetry_event_v1`` objects, read as the JSONL loader reads its lines (the
    same event ids derived for objects without one, under the same privacy settings)."""
    decoded = Decoded()
    for raw in elements:
        try:
            decoded.add(raw, parse_line(raw, privacy=privacy).to_proto())
        except LineRefused as refused:
            decoded.add(raw, None, str(refused))
    return decoded


def proto_json(record: type[Message]) -> Callable[[list[bytes]], Decoded]:
    """The JSON form of a gRPC record (``ingest.proto``'s field names, in snake or lower camel case)."""

    def decode(elements: list[bytes]) -> Decoded:
        decoded = Decoded()
        for raw in elements:
            message = record()
            try:
                json_format.Parse(raw, message)
            except (json_format.ParseError, UnicodeDecodeError, RecursionError) as error:
                decoded.add(raw, None, f"the element is not a {record.__name__}: {str(error)[:300]}")
                continue
            decoded.add(raw, message)
        return decoded

    return decode


@dataclass(frozen=True)
class Route:
    """One POST endpoint of the HTTP receiver: where, into which table, read by which decoder."""

    path: str
    table: RawTable
    decode: Callable[[list[bytes]], Decoded]
    summary: str
    schema: json_schemas.Schema  # of one element
    single_object: bool = False  # the body may be one object rather than an array
    ndjson: bool = False  # application/x-ndjson is accepted too
    status_im: bool = False  # answer as status-im telemetry answers (201 and the messages)


ROUTES = (
    Route(
        "/api/v1/telemetry",
        registry.SERVER_REPORTS,
        server_reports,
        "A game server's report (or an array of them), kept whole",
        json_schemas.SERVER_REPORT,
        single_object=True,
    ),
    Route(
        "/received-messages",
        registry.MESSAGE_SAMPLES,
        received_messages,
        "status-im telemetry's received messages, as message samples",
        json_schemas.RECEIVED_MESSAGE,
        status_im=True,
    ),
    Route(
        "/api/v1/events",
        registry.PRODUCT_EVENTS,
        product_events,
        "telemetry_event_v1 events, as a JSON array or NDJSON",
        json_schemas.EVENT,
        ndjson=True,
    ),
    Route(
        "/api/v1/minute-snapshots",
        registry.MINUTE_SNAPSHOTS,
        proto_json(pb.MinuteSnapshot),
        "Minute snapshots (the JSON form of ingest.proto's MinuteSnapshot)",
        json_schemas.record_schema(pb.MinuteSnapshot, registry.MINUTE_SNAPSHOTS),
    ),
    Route(
        "/api/v1/message-samples",
        registry.MESSAGE_SAMPLES,
        proto_json(pb.MessageSample),
        "Message samples (the JSON form of MessageSample)",
        json_schemas.record_schema(pb.MessageSample, registry.MESSAGE_SAMPLES),
    ),
    Route(
        "/api/v1/host-minutes",
        registry.HOST_MINUTES,
        proto_json(pb.HostMinute),
        "Host minute records (the JSON form of HostMinute)",
        json_schemas.record_schema(pb.HostMinute, registry.HOST_MINUTES),
    ),
    Route(
        "/api/v1/server-reports",
        registry.SERVER_REPORTS,
        proto_json(pb.ServerReport),
        "Game-server reports (the JSON form of ServerReport)",
        json_schemas.record_schema(pb.ServerReport, registry.SERVER_REPORTS),
    ),
)
