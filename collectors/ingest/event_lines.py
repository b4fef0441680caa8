"""One JSON line of ``telemetry_event_v1`` in, one :class:`ParsedEvent` out, or the reason it is refused.

This is only the JSON side (syntax, field types, ISO 8601 timestamps, the
derived event id). The record rules every sender shares (lengths, retention,
future timestamps, the payload's JSON) are the receiver's row rules,
applied afterwards to the parsed event, so the loader and the receiver cannot drift:
the payload is kept as the text the line holds, exactly as a sender would put it in
``payload_json``, and judged by the same rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

import msgspec

from collectors.ingest.privacy import NO_PRIVACY, Privacy
from collectors.ingest.rules import MAX_JSON_DEPTH, SCHEMA_VERSION, canonical_json, nests_too_deep, without_private
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

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
    sorted keys and its numbers as written), so the same event written twice, even with another key order,
    spacing or time zone offset, gets the same id and loading a file again adds nothing."""
    return "jsonl-" + hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:32]


def _canonical_payload(payload_json: str, privacy: Privacy = NO_PRIVACY, channel: str = "", event: str = "") -> str:
    """The payload's canonical text for the derived id, as it will be stored (after ``privacy``: an id of what
    privacy removes, an unkeyed hash, would let a truncated address be recovered in 256 guesses); an empty
    object when absent. A payload that is not JSON is refused by the payload rule afterwards: its id does not
    matter, so its text stands in."""
    if not payload_json:
        return ""
    if privacy.touches_payload:
        payload_json = without_private(payload_json, privacy, channel=channel, event=event) or payload_json  # type: ignore[assignment]
    try:
        canonical = canonical_json(payload_json)
    except (ValueError, RecursionError):
        return payload_json
    return "" if canonical == "{}" else canonical


@dataclass(slots=True)
class Stamp:
    seconds: int
    nanos: int


@dataclass(slots=True)
class ParsedEvent:
    """A parsed line with the attributes of :class:`ProductEvent` that the receiver's rules read
    (row rules accepts it as is); :meth:`to_proto` for sending it to the receiver."""

    event_id: str
    channel: str
    event: str
    timestamp: Stamp
    user_id: str
    session_id: str
    payload_json: str
    schema_version: str = SCHEMA_VERSION
    sample_rate: float | None = None  # None: unset (every user)
    dnt: bool = False

    def HasField(self, name: str) -> bool:
        return name == "timestamp" or (name == "sample_rate" and self.sample_rate is not None)

    def to_proto(self) -> pb.ProductEvent:
        event = pb.ProductEvent(
            event_id=self.event_id,
            schema_version=self.schema_version,
            channel=self.channel,
            event=self.event,
            user_id=self.user_id,
            session_id=self.session_id,
            payload_json=self.payload_json,
            sample_rate=self.sample_rate,
            dnt=self.dnt,
        )
        event.timestamp.seconds, event.timestamp.nanos = self.timestamp.seconds, self.timestamp.nanos
        return event


class EventLine(msgspec.Struct):
    """The JSON shape of one line; unknown keys are ignored (later schema revisions may add some)."""

    schema_version: str
    channel: str
    event: str
    timestamp: str
    payload: msgspec.Raw = msgspec.Raw(b"")  # the payload's text, judged by the receiver's payload rule
    event_id: str | int | None = None
    user_id: str | int | None = None
    session_id: str | int | None = None
    sample_rate: float | None = None  # the share of users the sender kept; absent: 1
    dnt: bool = False  # the user opted out of tracking


_decode = msgspec.json.Decoder(EventLine).decode
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


def parse_line(raw: bytes, *, default_user_id: str = "", privacy: Privacy = NO_PRIVACY) -> ParsedEvent:
    """The event of one line (without its newline); raises :class:`LineRefused`. ``privacy``: the rules its
    payload will be stored under, which a derived event id follows."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineRefused("line is not UTF-8") from None
    # only the payload may nest, one level below the line: refuse deeper lines the way the payload rule does
    # (and before the parser's own recursion limit, which would be a crash, not a reason)
    if nests_too_deep(text, MAX_JSON_DEPTH + 1):
        raise LineRefused(f"payload nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        line = _decode(text)
    except msgspec.MsgspecError as error:
        raise LineRefused(_reason(error)) from None
    except RecursionError:
        raise LineRefused(f"payload nests deeper than {MAX_JSON_DEPTH} levels") from None
    if line.schema_version != SCHEMA_VERSION:
        raise LineRefused(f"schema_version must be {SCHEMA_VERSION!r}, got {line.schema_version[:64]!r}")
    timestamp = parse_timestamp(line.timestamp)
    payload_json = bytes(line.payload).decode()
    user_id = str(line.user_id) if line.user_id is not None else default_user_id
    if not user_id:
        raise LineRefused("user_id is required (or pass --default-user-id)")
    session_id = str(line.session_id) if line.session_id is not None else ""
    event_id = str(line.event_id) if line.event_id is not None else ""
    if not event_id:
        event_id = derived_event_id(
            (
                line.channel,
                line.event,
                timestamp.isoformat(),
                user_id,
                session_id,
                _canonical_payload(payload_json, privacy, line.channel, line.event),
            )
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
        sample_rate=line.sample_rate,
        dnt=line.dnt,
    )
