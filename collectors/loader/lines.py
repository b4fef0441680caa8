"""One JSON line of ``telemetry_event_v1`` in, one :class:`ParsedEvent` out, or the reason it is refused.

This is only the JSON side (syntax, field types, ISO 8601 timestamps, the
derived event id). The record rules every sender shares (lengths, retention,
future timestamps, payload size) are the receiver's ``records.event_row``,
applied afterwards to the parsed event, so the loader and the receiver cannot drift.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.records import SCHEMA_VERSION

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class LineRefused(ValueError):
    """The line is not a valid telemetry_event_v1 object; ``str(error)`` is the reason."""


def parse_timestamp(value: str) -> dt.datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; a timestamp without offset is taken as UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise LineRefused(f"timestamp {value[:64]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def derived_event_id(fields: tuple[str, ...]) -> str:
    """A stable id for a line without one: SHA-256 of what is stored of it (timestamp in UTC, payload with
    sorted keys), so the same event written twice, even with another key order, spacing or time zone
    offset, gets the same id and loading a file again adds nothing."""
    return "jsonl-" + hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:32]


@dataclass(slots=True)
class Stamp:
    seconds: int
    nanos: int


@dataclass(slots=True)
class ParsedEvent:
    """A parsed line with the attributes of :class:`ProductEvent` that the receiver's rules read
    (``records.event_row`` accepts it as is); :meth:`to_proto` for sending it to the receiver."""

    event_id: str
    channel: str
    event: str
    timestamp: Stamp
    user_id: str
    session_id: str
    payload_json: str
    schema_version: str = SCHEMA_VERSION

    def HasField(self, name: str) -> bool:
        return name == "timestamp"

    def to_proto(self) -> pb.ProductEvent:
        event = pb.ProductEvent(
            event_id=self.event_id,
            schema_version=self.schema_version,
            channel=self.channel,
            event=self.event,
            user_id=self.user_id,
            session_id=self.session_id,
            payload_json=self.payload_json,
        )
        event.timestamp.seconds, event.timestamp.nanos = self.timestamp.seconds, self.timestamp.nanos
        return event


class EventLine(msgspec.Struct):
    """The JSON shape of one line; unknown keys are ignored (later schema revisions may add some)."""

    schema_version: str
    channel: str
    event: str
    timestamp: str
    payload: dict[str, Any] = {}
    event_id: str | int | None = None
    user_id: str | int | None = None
    session_id: str | int | None = None


_decode = msgspec.json.Decoder(EventLine).decode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode
_MISSING = re.compile(r"Object missing required field `(\w+)`")
_WRONG_TYPE = re.compile(r"Expected `(.+?)`, got `(\w+)`(?: - at `\$\.(\w+)`)?$")
_TYPE_NAMES = {"str": "a string", "int | str | null": "a string or a number", "object": "a JSON object"}


def _reason(error: msgspec.MsgspecError) -> str:
    """msgspec's message in the loader's words ("channel must be a string", "timestamp is required")."""
    message = str(error)
    if not isinstance(error, msgspec.ValidationError):  # (a ValidationError is also a DecodeError)
        return f"line is not valid JSON: {message.removeprefix('JSON is malformed: ')}"
    if missing := _MISSING.match(message):
        return f"{missing.group(1)} is required"
    if wrong := _WRONG_TYPE.match(message):
        expected, got, field = wrong.groups()
        return f"{field or 'line'} must be {_TYPE_NAMES.get(expected, expected)}, not {got}"
    return message


def parse_line(raw: bytes, *, default_user_id: str = "") -> ParsedEvent:
    """The event of one line (without its newline); raises :class:`LineRefused`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineRefused("line is not UTF-8") from None
    try:
        line = _decode(text)
    except msgspec.MsgspecError as error:
        raise LineRefused(_reason(error)) from None
    if line.schema_version != SCHEMA_VERSION:
        raise LineRefused(f"schema_version must be {SCHEMA_VERSION!r}, got {line.schema_version[:64]!r}")
    timestamp = parse_timestamp(line.timestamp)
    payload_json = _encode_sorted(line.payload).decode() if line.payload else ""
    user_id = str(line.user_id) if line.user_id is not None else default_user_id
    if not user_id:
        raise LineRefused("user_id is required (or pass --default-user-id)")
    session_id = str(line.session_id) if line.session_id is not None else ""
    event_id = str(line.event_id) if line.event_id is not None else ""
    if not event_id:
        event_id = derived_event_id(
            (line.channel, line.event, timestamp.isoformat(), user_id, session_id, payload_json)
        )
    delta = timestamp - EPOCH
    return ParsedEvent(
        event_id,
        line.channel,
        line.event,
        Stamp(delta.days * 86400 + delta.seconds, delta.microseconds * 1000),
        user_id,
        session_id,
        payload_json,
    )
