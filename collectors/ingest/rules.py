"""Per-record validation: a protobuf record in, a row for its raw table out (or the reason it is refused).

The rules are the column specs and checks of ``collectors.ingest.registry``, compiled here once per table into a
row builder (:func:`row_builder`): each column's value is read from the record and checked, then the rules that
tie columns together are applied, and :class:`RecordRefused` carries a reason a sender can act on.
:class:`~collectors.ingest.privacy.Privacy` (part of :class:`Limits`) cuts payloads to their allow-list, removes
excluded payload fields, anonymises IP addresses and hashes receiver public keys before a row exists, and
:func:`kept_record` cleans what raw.rejects keeps of a refused record the same way. The JSON Lines loader applies
the same builders to its lines. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import itertools
import json
import math
import operator
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from collectors.ingest import registry as reg
from collectors.ingest.privacy import NO_PRIVACY, AddressRefused, Privacy
from collectors.ingest.registry import INT64_MAX, MAX_JSON_DEPTH, SCHEMA_VERSION, RawTable
from collectors.proto.telemetry.v1 import ingest_pb2 as pb

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULT_MAX_IDS_PER_LIST = 50_000
ORDER_SLACK = 1e-9  # an average of equal samples can exceed their maximum by float rounding

__all__ = ["MAX_JSON_DEPTH", "SCHEMA_VERSION", "Limits", "RecordRefused", "row_builder"]


class RecordRefused(ValueError):
    """The record cannot be stored; ``str(error)`` is the reason kept in raw.rejects."""


@dataclass(frozen=True)
class Limits:
    """Bounds applied to every record; ``now`` is fixed per batch so one batch is judged consistently."""

    now: dt.datetime
    retention_days: int
    max_future_seconds: int = 300
    max_payload_bytes: int = 16 * 1024
    privacy: Privacy = NO_PRIVACY
    max_ids_per_list: int = DEFAULT_MAX_IDS_PER_LIST

    @functools.cached_property
    def earliest(self) -> float:
        return (self.now - dt.timedelta(days=self.retention_days) - EPOCH).total_seconds()

    @functools.cached_property
    def latest(self) -> float:
        return (self.now - EPOCH).total_seconds() + self.max_future_seconds


class IdArray:
    """The user ids of one state list as int64s, 8 bytes an id rather than a Python int each (a snapshot may list
    tens of thousands); the writer COPYs it as ``int8[]`` straight from the array."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdArray) and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]

    def tolist(self) -> list[int]:
        return self.values.tolist()


# --------------------------------------------------------------------------- reading one column

Reader = Callable[[object, Limits], object]


def _getter(spec: reg.Spec) -> Callable[[object], object]:
    """The spec's field of a record (a dotted path), or None when its ``within`` message is absent."""
    path = operator.attrgetter(spec.field)
    if spec.within is None:
        return path
    parent = spec.within

    def within(msg: object) -> object:
        if not msg.HasField(parent):  # type: ignore[attr-defined]
            return None
        return path(getattr(msg, parent))

    return within


def _text(value: str, label: str, max_len: int, required: bool) -> str:
    if not value:
        if required:
            raise RecordRefused(f"{label} is required")
        return value
    if len(value) > max_len:
        raise RecordRefused(f"{label} is longer than {max_len} characters")
    if "\x00" in value:
        raise RecordRefused(f"{label} contains a NUL character")
    return value


def _number(value: float, label: str, low: float, high: float) -> float:
    if not math.isfinite(value):
        raise RecordRefused(f"{label} is not a finite number")
    if not low <= value <= high:
        raise RecordRefused(f"{label}={value} is outside [{low}, {high}]")
    return value


def _count(value: int, label: str, high: int) -> int:
    if not 0 <= value <= high:
        raise RecordRefused(f"{label}={value} is outside [0, {high}]")
    return value


def _time(msg: object, spec: reg.Time, limits: Limits) -> dt.datetime | None:
    label = spec.label
    if not msg.HasField(spec.field):  # type: ignore[attr-defined]
        if spec.required:
            raise RecordRefused(f"{label} is required")
        return None
    ts = getattr(msg, spec.field)
    whole, nanos = ts.seconds, ts.nanos
    if not 0 <= nanos < 1_000_000_000:
        raise RecordRefused(f"{label} has invalid nanos {nanos}")
    seconds = whole + nanos / 1e9
    if seconds > limits.latest:
        raise RecordRefused(f"{label} is more than {limits.max_future_seconds} s in the future")
    if seconds < limits.earliest:
        raise RecordRefused(f"{label} is older than the retention of {limits.retention_days} days")
    value = dt.datetime.fromtimestamp(whole, dt.UTC).replace(microsecond=nanos // 1000)
    return value.replace(second=0, microsecond=0) if spec.to_minute else value


def _user_ids(values: Sequence[int], label: str, limit: int) -> IdArray:
    if len(values) > limit:
        raise RecordRefused(f"{label} lists more than {limit} users")
    ids = np.fromiter(values, dtype=np.int64, count=len(values))
    if ids.size and ids.min() < 0:
        raise RecordRefused(f"{label} contains a negative user id")
    if np.unique(ids).size != ids.size:
        raise RecordRefused(f"{label} lists a user more than once")
    return IdArray(ids)


def histogram_json(h: pb.LogHistogram, field: str, max_buckets: int = 8192) -> str:
    """The histogram as the compact jsonb document stored in raw.host_minutes."""
    if len(h.bucket_index) != len(h.bucket_count):
        raise RecordRefused(f"{field}: bucket_index and bucket_count differ in length")
    if len(h.bucket_index) > max_buckets:
        raise RecordRefused(f"{field} has more than {max_buckets} buckets")
    index = list(h.bucket_index)
    if any(b <= a for a, b in itertools.pairwise(index)):
        raise RecordRefused(f"{field}: bucket_index must be strictly ascending")
    counts = list(h.bucket_count)
    if any(c <= 0 or c > INT64_MAX for c in counts) or h.zero_count > INT64_MAX:
        raise RecordRefused(f"{field}: bucket counts must be in [1, 2^63)")
    for name in ("sum", "min", "max"):
        if not math.isfinite(getattr(h, name)):
            raise RecordRefused(f"{field}.{name} is not a finite number")
    if not counts and not h.zero_count:
        raise RecordRefused(f"{field} is empty")
    if h.min > h.max:
        raise RecordRefused(f"{field}: min {h.min} is greater than max {h.max}")
    return json.dumps({"i": index, "c": counts, "z": h.zero_count, "sum": h.sum, "min": h.min, "max": h.max})


def _reader(spec: reg.Spec) -> Reader:
    """A function reading and checking the spec's column of a record."""
    get, label = _getter(spec), spec.label
    if isinstance(spec, reg.ReceiverKey):
        return lambda msg, limits: limits.privacy.receiver_key(
            _text(get(msg), label, spec.max_len, spec.required)  # type: ignore[arg-type]
        )
    if isinstance(spec, reg.Text):
        if spec.empty_is_null:
            return lambda msg, limits: _text(get(msg), label, spec.max_len, spec.required) or None  # type: ignore[arg-type]
        return lambda msg, limits: _text(get(msg), label, spec.max_len, spec.required)  # type: ignore[arg-type]
    if isinstance(spec, reg.Time):
        return lambda msg, limits: _time(msg, spec, limits)
    if isinstance(spec, reg.Number):
        if spec.within is not None:

            def optional_number(msg: object, limits: Limits) -> float | None:
                value = get(msg)
                return None if value is None else _number(value, label, spec.low, spec.high)  # type: ignore[arg-type]

            return optional_number
        return lambda msg, limits: _number(get(msg), label, spec.low, spec.high)  # type: ignore[arg-type]
    if isinstance(spec, reg.Count):
        if spec.within is not None:

            def optional_count(msg: object, limits: Limits) -> int | None:
                value = get(msg)
                return None if value is None else _count(value, label, spec.high)  # type: ignore[arg-type]

            return optional_count
        return lambda msg, limits: _count(get(msg), label, spec.high)  # type: ignore[arg-type]
    if isinstance(spec, reg.Numbers):

        def numbers(msg: object, limits: Limits) -> list[float]:
            values = get(msg)
            if len(values) > spec.max_items:  # type: ignore[arg-type]
                raise RecordRefused(f"{label} lists more than {spec.max_items} values")
            return [_number(v, f"{label}[]", spec.low, spec.high) for v in values]  # type: ignore[union-attr]

        return numbers
    if isinstance(spec, reg.Ids):
        return lambda msg, limits: _user_ids(get(msg), label, limits.max_ids_per_list)  # type: ignore[arg-type]
    if isinstance(spec, reg.Strings):

        def strings(msg: object, limits: Limits) -> list[str] | None:
            values = get(msg)
            if len(values) > spec.max_items:  # type: ignore[arg-type]
                raise RecordRefused(f"{label} lists more than {spec.max_items} {spec.item}s")
            items = [_text(v, f"{label}[]", spec.max_len, True) for v in values]  # type: ignore[union-attr]
            if len(set(items)) != len(items):
                raise RecordRefused(f"{label} lists a {spec.item} more than once")
            return items or None

        return strings
    if isinstance(spec, reg.Blob):

        def blob(msg: object, limits: Limits) -> bytes:
            value = get(msg)
            if len(value) > spec.max_bytes:  # type: ignore[arg-type]
                raise RecordRefused(f"{label} is larger than {spec.max_bytes} bytes")
            return value  # type: ignore[return-value]

        return blob
    if isinstance(spec, reg.Histogram):
        outer, name = spec.within, spec.field

        def histogram(msg: object, limits: Limits) -> str | None:
            if outer is not None and not msg.HasField(outer):  # type: ignore[attr-defined]
                return None
            holder = getattr(msg, outer) if outer is not None else msg
            if not holder.HasField(name):
                return None
            return histogram_json(getattr(holder, name), name, spec.max_buckets)

        return histogram
    if isinstance(spec, reg.Payload):
        # the payload's allow-list is the event's: the record's channel and event pick it
        return lambda msg, limits: payload_json(
            get(msg),  # type: ignore[arg-type]
            limits.max_payload_bytes,
            limits.privacy,
            msg.channel,  # type: ignore[attr-defined]
            msg.event,  # type: ignore[attr-defined]
        )
    if isinstance(spec, reg.Document):
        return _document_reader(spec, get)
    if isinstance(spec, reg.SampleRate):

        def sample_rate(msg: object, limits: Limits) -> float:
            if not msg.HasField(spec.field):  # type: ignore[attr-defined]
                return 1.0
            value = get(msg)
            if not (isinstance(value, float | int) and 0 < value <= 1):  # NaN fails both comparisons
                raise RecordRefused(f"{label} must be in (0, 1], not {value}")
            return float(value)

        return sample_rate
    if isinstance(spec, reg.SchemaVersion):

        def schema_version(msg: object, limits: Limits) -> str:
            if get(msg) not in ("", SCHEMA_VERSION):
                raise RecordRefused(f"{label} must be {SCHEMA_VERSION!r}")
            return SCHEMA_VERSION

        return schema_version
    raise TypeError(f"no reader for {spec!r}")


def _values_at(document: dict, path: str) -> list[object]:
    """The values at a dotted ``path`` (``a.b[]``: each item of the array; ``a.b{}``: each value of the object);
    none when the path is absent."""
    each = path[-2:] if path.endswith(("[]", "{}")) else ""
    node: object = document
    for key in (path[: -len(each)] if each else path).split("."):
        if not isinstance(node, dict) or key not in node:
            return []
        node = node[key]
    if each == "[]":
        return list(node) if isinstance(node, list) else [node]
    if each == "{}":
        return list(node.values()) if isinstance(node, dict) else [node]
    return [node]


def _check_field(document: dict, field: reg.Field) -> None:
    for value in _values_at(document, field.path):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordRefused(f"{field.path} must be a number")
        if not math.isfinite(value):
            raise RecordRefused(f"{field.path} is not a finite number")
        if field.whole and not isinstance(value, int):
            raise RecordRefused(f"{field.path} must be a whole number")
        if not field.low <= value <= field.high:
            raise RecordRefused(f"{field.path}={value} is outside [{field.low:g}, {field.high:g}]")


def _document_reader(spec: reg.Document, get: Callable[[object], object]) -> Reader:
    label = spec.label

    def document(msg: object, limits: Limits) -> str:
        text = get(msg)
        if not isinstance(text, str) or not text:
            raise RecordRefused(f"{label} is required")
        value = _json_object(text, label, spec.max_bytes, _DOCUMENT_DECODER)
        for field in spec.fields:
            _check_field(value, field)
        for name in spec.matches:
            own = getattr(msg, name)
            if name in value and value[name] != own:
                raise RecordRefused(f"the document's {name} {str(value[name])[:64]!r} is not the record's {own!r}")
        for low, high in spec.not_above:
            lows, highs = _values_at(value, low), _values_at(value, high)
            if lows and highs and lows[0] > highs[0]:  # both checked as numbers above
                raise RecordRefused(f"{low}={lows[0]} is above {high}={highs[0]}")
        return text

    return document


# --------------------------------------------------------------------------- rules that tie columns together

Rule = Callable[[tuple], None]


def _rule(table: RawTable, check: reg.Check) -> Rule:
    at, label = table.column_names.index, table.label
    if isinstance(check, reg.Subsets):
        lists, of = [(at(c), label(c)) for c in check.lists], at(check.of)
        of_label = label(check.of)

        def subsets(row: tuple) -> None:
            whole = row[of].values
            for position, name in lists:
                ids = row[position].values
                if ids.size and not np.isin(ids, whole, assume_unique=True).all():
                    raise RecordRefused(f"{name} lists users missing from {of_label}")

        return subsets
    if isinstance(check, reg.SumAtMost):
        parts, whole = [at(c) for c in check.parts], at(check.whole)
        text = f"{' + '.join(label(c) for c in check.parts)} exceeds {label(check.whole)}"

        def sum_at_most(row: tuple) -> None:
            if sum(row[p] for p in parts) > row[whole]:
                raise RecordRefused(text)

        return sum_at_most
    if isinstance(check, reg.CountAtMost):
        items, limit = at(check.items), at(check.limit)
        item = table.column(check.items).spec.item  # type: ignore[union-attr]

        def count_at_most(row: tuple) -> None:
            listed = len(row[items] or ())
            if listed > row[limit]:
                raise RecordRefused(
                    f"{label(check.items)} lists {listed} {item}s but {label(check.limit)} is {row[limit]}"
                )

        return count_at_most
    if isinstance(check, reg.AtLeast):
        high, low = at(check.high), at(check.low)

        def at_least(row: tuple) -> None:
            if row[high] < row[low] - ORDER_SLACK:
                raise RecordRefused(f"{check.high}={row[high]} is less than {check.low}={row[low]}")

        return at_least
    if isinstance(check, reg.BytesAtMost):
        positions = [at(c) for c in check.columns]
        text = f"{' and '.join(label(c) for c in check.columns)} take more than {check.limit} bytes together"

        def bytes_at_most(row: tuple) -> None:
            # characters first: most keys are ASCII, and only long ones can be over
            if sum(len(row[p]) for p in positions) > check.limit // 4 and (
                sum(len(row[p].encode()) for p in positions) > check.limit
            ):
                raise RecordRefused(text)

        return bytes_at_most
    raise TypeError(f"no rule for {check!r}")


RowBuilder = Callable[[object, Limits, uuid.UUID], tuple]


@functools.cache
def row_builder(table: RawTable) -> RowBuilder:
    """The function turning one record of ``table`` into its row (``batch_id`` last), or refusing it."""
    readers = [_reader(column.spec) for column in table.columns if column.spec is not None]
    if len(readers) != len(table.columns) - 1:
        raise ValueError(f"raw.{table.name} is not read from records: its rows come from another table's")
    rules = [_rule(table, check) for check in table.checks]
    refusals = [(refusal.field, refusal.reason) for refusal in table.refused_when]

    def build(msg: object, limits: Limits, batch_id: uuid.UUID) -> tuple:
        for name, reason in refusals:
            if getattr(msg, name, False):
                raise RecordRefused(reason)
        row = (*[read(msg, limits) for read in readers], batch_id)
        for rule in rules:
            rule(row)
        return row

    return build


# --------------------------------------------------------------------------- payloads


def _reject_constant(name: str) -> float:
    raise RecordRefused(f"payload contains {name}, which is not JSON")


def _number_text(text: str) -> str:
    """Integers are only validated, never used: keeping their text avoids Python's 4,300-digit int limit, which
    PostgreSQL's jsonb does not have."""
    return text


# built once: they are on the hot path
_PAYLOAD_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_number_text)
# a document's numbers are read as numbers: their ranges are checked
_DOCUMENT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# re-encoding after removing fields keeps every number as it was written (1.10, 1e400, 2**70, 5,000 digits)
_EXACT_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=decimal.Decimal, parse_int=decimal.Decimal
)
_EXACT_ENCODER = msgspec.json.Encoder(decimal_format="number")
_EXACT_SORTED_ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")
# \u0000 escapes a NUL (which jsonb refuses) only when its backslash is not itself escaped
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub('""', text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def nests_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    # counting brackets first keeps the exact scan off the hot path
    return text.count("{") + text.count("[") > limit and json_depth(text) > limit


_FAST_EXACT_DECODER = msgspec.json.Decoder(float_hook=decimal.Decimal)


def canonical_json(text: str | bytes) -> str:
    """One spelling of a JSON value: keys sorted, no spaces, every number exactly as written (for derived ids).

    Raises ValueError when ``text`` is not JSON."""
    try:
        value = _FAST_EXACT_DECODER.decode(text)
    except msgspec.DecodeError:  # integers beyond 64 bits, or not JSON at all
        value = _EXACT_DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    return _EXACT_SORTED_ENCODER.encode(value).decode()


# the keys of a telemetry_event_v1 object (collectors.ingest.event_lines.EventLine): what a JSON event's reject
# keeps when payload privacy applies (other keys are ignored by every path, and might hold anything)
EVENT_LINE_KEYS = frozenset(
    {
        "schema_version",
        "channel",
        "event",
        "timestamp",
        "payload",
        "event_id",
        "user_id",
        "session_id",
        "sample_rate",
        "dnt",
    }
)


def _text_or_empty(value: object) -> str:
    return value if isinstance(value, str) else ""


def without_private(
    text: str | bytes, privacy: Privacy, under: str | None = None, channel: str = "", event: str = ""
) -> str | bytes | None:
    """What raw.rejects keeps of a refused product event's JSON ``text``: the payload (``text`` itself, or its
    member ``under`` in a telemetry_event_v1 object, whose channel and event then pick the allow-list) cleaned
    by ``privacy`` as a row's would be, except that an IP key holding no IP address is dropped; in an object,
    only the keys of telemetry_event_v1. Always written anew (duplicate keys, which parsers resolve to the last,
    cannot bring back what was removed). None when it cannot be parsed (it might hold a private field under any
    spelling, ``\\u`` escapes included), when the payload is not an object (its arrays are not looked into) or
    when it cannot be re-encoded, so that nothing of it should be kept."""
    try:
        value = _EXACT_DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, RecursionError):  # RecordRefused and UnicodeDecodeError are ValueErrors
        return None
    if under is not None:
        if not isinstance(value, dict):
            return None
        for key in set(value) - EVENT_LINE_KEYS:
            del value[key]
        channel, event = _text_or_empty(value.get("channel")), _text_or_empty(value.get("event"))
        payload = value.get(under, {})
    else:
        payload = value
    if not isinstance(payload, dict):
        return None  # an array (or worse) may hold the field anywhere inside
    privacy.clean_payload(payload, channel, event, strict=False)
    try:
        encoded = _EXACT_ENCODER.encode(value)
    except (UnicodeEncodeError, msgspec.EncodeError):  # a lone surrogate escape, which no UTF-8 can carry
        return None
    return encoded if isinstance(text, bytes) else encoded.decode()


def _json_object(text: str, label: str, max_bytes: int, decoder: json.JSONDecoder) -> dict:
    """``text`` decoded, when it is a JSON object of at most ``max_bytes`` without NUL characters (which jsonb
    refuses) or nesting past ``MAX_JSON_DEPTH``; refused with ``label`` in the reason otherwise."""
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise RecordRefused(f"{label} is larger than {max_bytes} bytes")
    if "\x00" in text or ("\\u0000" in text and _ESCAPED_NUL.search(text)):
        raise RecordRefused(f"{label} contains a NUL character")
    if nests_too_deep(text):
        raise RecordRefused(f"{label} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = decoder.decode(text)
    except (ValueError, RecursionError) as error:
        if isinstance(error, RecordRefused):
            raise
        raise RecordRefused(f"{label} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RecordRefused(f"{label} must be a JSON object")
    return value


def payload_json(text: str, max_bytes: int, privacy: Privacy = NO_PRIVACY, channel: str = "", event: str = "") -> str:
    """Validate a JSON object payload; returns the text to store: cut to the allow-list of ``channel``/``event``,
    without excluded fields, IP addresses anonymised (``privacy``), or as sent when none of that changed it."""
    if not privacy.touches_payload:
        if text:
            _json_object(text, "payload", max_bytes, _PAYLOAD_DECODER)
        return text or "{}"
    # decoded with every number exact, so that a payload written anew keeps them as they were sent
    value = _json_object(text, "payload", max_bytes, _EXACT_DECODER) if text else {}
    try:
        changed = privacy.clean_payload(value, channel, event, strict=True)
    except AddressRefused as refused:
        raise RecordRefused(str(refused)) from None
    if not changed:
        return text or "{}"
    try:
        return _EXACT_ENCODER.encode(value).decode()
    except (UnicodeEncodeError, msgspec.EncodeError):
        raise RecordRefused("payload holds a character no UTF-8 text can carry (a lone surrogate escape)") from None


def is_account_created(row: tuple) -> bool:
    """True for a raw.product_events row of an ``account_created`` event on channel ``user``."""
    return row[2] == "user" and row[3] == "account_created"


def account_row(event: tuple) -> tuple:
    """The raw.accounts_created row of an accepted ``account_created`` event row."""
    return (event[0], event[5], event[4], event[-1])  # the batch id is always last


# --------------------------------------------------------------------------- what is kept of refused records

# how JSON senders name the receiver's public key (ours; status-im telemetry's)
RECEIVER_KEY_FIELDS = ("receiver_public_key", "receiverKeyUID")

WITHHELD_NOTE = (
    "payload withheld from this reject: it could not be parsed while payload privacy rules are configured "
    "(record_sha256 is the hash of the record as sent)"
)


@dataclass(frozen=True)
class Kept:
    """What raw.rejects keeps of a refused record: ``record``, and when that is not the record as sent (a field
    withheld), a ``note`` for the reason and the ``sha256``/``size`` of the record as sent."""

    record: bytes
    note: str = ""
    sha256: str | None = None
    size: int | None = None

    @classmethod
    def withheld(cls, kept: bytes, original: bytes) -> Kept:
        return cls(kept, WITHHELD_NOTE, hashlib.sha256(original).hexdigest(), len(original))


def kept_record(msg: object, privacy: Privacy) -> Kept:
    """The refused protobuf record as raw.rejects keeps it: as sent, with the receiver key hashed and the payload
    cleaned as a row's (:func:`without_private`, fields unknown to the schema dropped); a payload that cannot be
    cleaned (unparseable while payload privacy is configured) is withheld."""
    if not privacy.active:
        return Kept(msg.SerializeToString())  # type: ignore[attr-defined]
    if isinstance(msg, pb.MessageSample) and privacy.receiver_key_salt is not None and msg.receiver_public_key:
        copy = pb.MessageSample()
        copy.CopyFrom(msg)
        copy.receiver_public_key = privacy.receiver_key(msg.receiver_public_key)
        return Kept(copy.SerializeToString())
    if isinstance(msg, pb.ProductEvent) and privacy.touches_payload:
        copy = pb.ProductEvent()
        copy.CopyFrom(msg)
        copy.DiscardUnknownFields()
        cleaned = msg.payload_json and without_private(msg.payload_json, privacy, channel=msg.channel, event=msg.event)
        copy.payload_json = cleaned or ""  # type: ignore[assignment]
        if cleaned is None:
            return Kept.withheld(copy.SerializeToString(), msg.SerializeToString())
        return Kept(copy.SerializeToString())
    return Kept(msg.SerializeToString())  # type: ignore[attr-defined]


def kept_json(raw: bytes, table: RawTable, privacy: Privacy) -> Kept:
    """A refused record sent as JSON, as raw.rejects keeps it: a product event cleaned by
    :func:`without_private`, receiver keys hashed; withheld when privacy applies and it cannot be parsed."""
    if not privacy.active:
        return Kept(raw)
    if table is reg.PRODUCT_EVENTS and privacy.touches_payload:
        cleaned = without_private(raw, privacy, under="payload")
        return Kept.withheld(b"", raw) if cleaned is None else Kept(cleaned)  # type: ignore[arg-type]
    if table is reg.MESSAGE_SAMPLES and privacy.receiver_key_salt is not None:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return Kept.withheld(b"", raw)
        if not isinstance(value, dict):
            return Kept.withheld(b"", raw)
        for key in RECEIVER_KEY_FIELDS:
            if isinstance(value.get(key), str):
                value[key] = privacy.receiver_key(value[key])
        return Kept(json.dumps(value).encode())
    return Kept(raw)


def conflict_reason(table: RawTable, first: int, unit: str = "record") -> str:
    return (
        f"conflicting duplicate: {unit} {first} of this batch has the same natural key "
        f"({', '.join(table.key)}) with other contents; the first one was kept"
    )


def _same_contents(table: RawTable, a: tuple, b: tuple) -> bool:
    """True when two rows hold the same record; JSON columns compare as JSON (a key spelled ``\\u007f`` or not)."""
    for i in table.content_indexes:
        if a[i] == b[i]:
            continue
        if table.types[i] != "jsonb" or a[i] is None or b[i] is None:
            return False
        try:
            if canonical_json(a[i]) != canonical_json(b[i]):
                return False
        except ValueError:
            return False
    return True


def conflicting_rows(table: RawTable, rows: Sequence[tuple]) -> list[tuple[int, int]]:
    """(position, position of the first) of each row whose natural key an earlier row of ``rows`` has, with other
    contents: a conflicting duplicate. Copies that agree are left alone: they collapse when they land."""
    key_of = operator.itemgetter(*table.key_indexes)
    first: dict[object, int] = {}
    conflicts = []
    for position, row in enumerate(rows):
        earlier = first.setdefault(key_of(row), position)
        if earlier != position and not _same_contents(table, rows[earlier], row):
            conflicts.append((position, earlier))
    return conflicts
