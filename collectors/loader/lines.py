"""One JSON line of ``telemetry_event_v1`` in, one :class:`ProductEvent` out, or the reason it is refused.

This is only the JSON side (syntax, field types, ISO 8601 timestamps, the
derived event id). The record rules every sender shares (lengths, retention,
future timestamps, payload size) are the receiver's, applied afterwards by
:mod:`collectors.receiver.service`, so the loader and the receiver cannot drift.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.records import SCHEMA_VERSION

# Namespace of derived event ids: uuid5 of the line's canonical content.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d2c3e-8a47-5b1e-9c0d-2e7f4a5b6c7d")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class LineRefused(ValueError):
    """The line is not a valid telemetry_event_v1 object; ``str(error)`` is the reason."""


def parse_timestamp(value: object) -> dt.datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; a timestamp without offset is taken as UTC."""
    if not isinstance(value, str):
        raise LineRefused("timestamp must be an ISO 8601 string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise LineRefused(f"timestamp {value[:64]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _optional_text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LineRefused(f"{key} must be a string")
    return str(value)


def derived_event_id(obj: dict, timestamp: dt.datetime) -> str:
    """A stable id for a line without one: uuid5 of its canonical JSON (sorted keys, UTC timestamp).

    The same event written twice (even with another key order, spacing or time
    zone offset) gets the same id, so loading a file again adds nothing.
    """
    canonical = dict(obj, timestamp=timestamp.isoformat())
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, text))


def parse_line(raw: bytes, *, default_user_id: str = "") -> pb.ProductEvent:
    """The event of one line (without its newline); raises :class:`LineRefused`."""
    try:
        text = raw.decode("utf-8")  # json.loads(bytes) would also guess UTF-16/32: the format is UTF-8
    except UnicodeDecodeError:
        raise LineRefused("line is not UTF-8") from None
    try:
        obj = json.loads(text)
    except ValueError as error:
        raise LineRefused(f"line is not valid JSON: {error}") from None
    if not isinstance(obj, dict):
        raise LineRefused("line must be a JSON object")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        if version is None:
            raise LineRefused("schema_version is required")
        raise LineRefused(f"schema_version must be {SCHEMA_VERSION!r}, got {str(version)[:64]!r}")
    for key in ("channel", "event"):
        if not isinstance(obj.get(key), str):
            raise LineRefused(f"{key} is required and must be a string")
    if "timestamp" not in obj:
        raise LineRefused("timestamp is required")
    timestamp = parse_timestamp(obj["timestamp"])
    payload = obj.get("payload", {})
    if not isinstance(payload, dict):
        raise LineRefused("payload must be a JSON object")
    event_id = _optional_text(obj, "event_id") or derived_event_id(obj, timestamp)
    user_id = _optional_text(obj, "user_id") or default_user_id
    if not user_id:
        raise LineRefused("user_id is required (or pass --default-user-id)")
    delta = timestamp - EPOCH
    event = pb.ProductEvent(
        event_id=event_id,
        schema_version=SCHEMA_VERSION,
        channel=obj["channel"],
        event=obj["event"],
        user_id=user_id,
        session_id=_optional_text(obj, "session_id"),
        payload_json=json.dumps(payload, separators=(",", ":"), ensure_ascii=False) if payload else "",
    )
    event.timestamp.seconds = delta.days * 86400 + delta.seconds
    event.timestamp.nanos = delta.microseconds * 1000
    return event
