"""Per-record validation: a protobuf record in, a row for its raw table out (or the reason it is refused).

Each raw table has a :class:`TableSpec` (the columns COPY writes, in order, and
the partition column). A ``to_row`` function turns one record into a tuple in
that column order, or raises :class:`RecordRefused` with a reason a sender can
act on. :class:`Privacy` (part of :class:`Limits`) removes configured payload
fields and hashes receiver public keys before a row exists, and cleans the
bytes kept of refused records the same way. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import hmac
import itertools
import json
import math
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from collectors.proto.telemetry.v1 import ingest_pb2 as pb

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SCHEMA_VERSION = "telemetry_event_v1"
MAX_STATE_LIST = 200_000
MAX_BATTLE_IDS = 20_000
MAX_CORES = 4096
MAX_HISTOGRAM_BUCKETS = 8192
MAX_TOPICS_BYTES = 4096
MAX_JSON_DEPTH = 100  # arrays and objects in a payload
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# raw.message_samples' unique index holds receiver_public_key and message_id; btree refuses index rows over
# 2704 bytes, which 512 + 256 characters of 4-byte UTF-8 exceed
MAX_SAMPLE_KEY_BYTES = 2400
HASHED_KEY_PREFIX = "hmac-sha256:"


class RecordRefused(ValueError):
    """The record cannot be stored; ``str(error)`` is the reason kept in raw.rejects."""


@dataclass(frozen=True)
class TableSpec:
    """A raw table as COPY writes it: columns in row order, their PostgreSQL types (for binary COPY;
    ``batch_id`` must then be a ``uuid.UUID``), the partition column and the natural key (the columns of the
    table's unique constraint, partition column included)."""

    table: str
    columns: tuple[str, ...]
    partition_column: str
    types: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def partition_index(self) -> int:
        return self.columns.index(self.partition_column)

    @functools.cached_property
    def key_indexes(self) -> tuple[int, ...]:
        return tuple(self.columns.index(name) for name in self.key)

    @functools.cached_property
    def content_indexes(self) -> tuple[int, ...]:
        """Every column but the batch id: what two copies of one record must agree on."""
        return tuple(i for i, name in enumerate(self.columns) if name != "batch_id")


def _payload_paths(fields: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(name.split(".")) for name in fields)


@dataclass(frozen=True)
class Privacy:
    """What never lands as sent (settings ``TELEMETRY_PAYLOAD_EXCLUDE_FIELDS``, ``TELEMETRY_HASH_RECEIVER_KEYS``
    with ``TELEMETRY_RECEIVER_KEY_SALT``).

    ``payload_exclude``: key paths (``"email"``, ``"device.ip"``) removed from product event payloads (objects
    only; keys inside arrays are not looked into). ``receiver_key_salt``: when set, each receiver public key is
    replaced by ``hmac-sha256:<hex>`` of it under the salt: deterministic, so replays still deduplicate and the
    reliability marts, which only group and join on the key, give the same numbers; keyed, because public keys
    are public and an unkeyed hash of one is a lookup away. Picklable (the loader's worker processes get it).
    """

    payload_exclude: tuple[tuple[str, ...], ...] = ()
    receiver_key_salt: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, exclude_fields: Iterable[str] = (), receiver_key_salt: str | None = None) -> Privacy:
        return cls(_payload_paths(exclude_fields), receiver_key_salt.encode() if receiver_key_salt else None)

    @classmethod
    def from_settings(cls, settings: object) -> Privacy:
        """The rules a :class:`collectors.config.Settings` asks for."""
        salt = settings.receiver_key_salt.get_secret_value() if settings.hash_receiver_keys else None  # type: ignore[attr-defined]
        return cls.of(settings.payload_exclude_fields, salt)  # type: ignore[attr-defined]

    @property
    def active(self) -> bool:
        return bool(self.payload_exclude) or self.receiver_key_salt is not None

    def receiver_key(self, key: str) -> str:
        if self.receiver_key_salt is None or not key:
            return key
        return HASHED_KEY_PREFIX + hmac.new(self.receiver_key_salt, key.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _parent(value: dict, path: tuple[str, ...]) -> dict | None:
        """The object holding the last key of ``path``, if the path leads through objects."""
        node = value
        for key in path[:-1]:
            node = node.get(key)  # type: ignore[assignment]
            if not isinstance(node, dict):
                return None
        return node

    def has_excluded(self, value: dict) -> bool:
        """True when ``value`` (a payload object) holds a key path to exclude."""
        return any(path[-1] in (self._parent(value, path) or ()) for path in self.payload_exclude)

    def drop_excluded(self, value: dict) -> None:
        for path in self.payload_exclude:
            parent = self._parent(value, path)
            if parent is not None:
                parent.pop(path[-1], None)


NO_PRIVACY = Privacy()


@dataclass(frozen=True)
class Limits:
    """Bounds applied to every record; ``now`` is fixed per batch so one batch is judged consistently."""

    now: dt.datetime
    retention_days: int
    max_future_seconds: int = 300
    max_payload_bytes: int = 16 * 1024
    privacy: Privacy = NO_PRIVACY
    max_ids_per_list: int = MAX_STATE_LIST

    @functools.cached_property
    def earliest(self) -> float:
        return (self.now - dt.timedelta(days=self.retention_days) - EPOCH).total_seconds()

    @functools.cached_property
    def latest(self) -> float:
        return (self.now - EPOCH).total_seconds() + self.max_future_seconds


# --------------------------------------------------------------------------- field checks


def _text(value: str, field: str, *, max_len: int, required: bool = True) -> str:
    if not value:
        if required:
            raise RecordRefused(f"{field} is required")
        return value
    if len(value) > max_len:
        raise RecordRefused(f"{field} is longer than {max_len} characters")
    if "\x00" in value:
        raise RecordRefused(f"{field} contains a NUL character")
    return value


def _time(msg: object, field: str, limits: Limits, *, required: bool = True) -> dt.datetime | None:
    if not msg.HasField(field):  # type: ignore[attr-defined]
        if required:
            raise RecordRefused(f"{field} is required")
        return None
    ts = getattr(msg, field)
    whole, nanos = ts.seconds, ts.nanos
    if not 0 <= nanos < 1_000_000_000:
        raise RecordRefused(f"{field} has invalid nanos {nanos}")
    seconds = whole + nanos / 1e9
    if seconds > limits.latest:
        raise RecordRefused(f"{field} is more than {limits.max_future_seconds} s in the future")
    if seconds < limits.earliest:
        raise RecordRefused(f"{field} is older than the retention of {limits.retention_days} days")
    return _from_epoch(whole).replace(microsecond=nanos // 1000)


def _from_epoch(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _minute(msg: object, field: str, limits: Limits) -> dt.datetime:
    value = _time(msg, field, limits)
    assert value is not None
    return value.replace(second=0, microsecond=0)


def _number(value: float, field: str, *, low: float = 0.0, high: float = math.inf) -> float:
    if not math.isfinite(value):
        raise RecordRefused(f"{field} is not a finite number")
    if not low <= value <= high:
        raise RecordRefused(f"{field}={value} is outside [{low}, {high}]")
    return value


def _count(value: int, field: str, high: int = INT32_MAX) -> int:
    if not 0 <= value <= high:
        raise RecordRefused(f"{field}={value} is outside [0, {high}]")
    return value


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


def _user_ids(values: Sequence[int], field: str, limit: int) -> IdArray:
    if len(values) > limit:
        raise RecordRefused(f"{field} lists more than {limit} users")
    ids = np.fromiter(values, dtype=np.int64, count=len(values))
    if ids.size and ids.min() < 0:
        raise RecordRefused(f"{field} contains a negative user id")
    if np.unique(ids).size != ids.size:
        raise RecordRefused(f"{field} lists a user more than once")
    return IdArray(ids)


# --------------------------------------------------------------------------- minute snapshots

MINUTE_SNAPSHOTS = TableSpec(
    table="minute_snapshots",
    columns=(
        "server_id",
        "minute",
        "player",
        "spectator",
        "lobby",
        "menu",
        "total",
        "battles_total",
        "battles_lobby",
        "battles_in_progress",
        "battle_ids",
        "batch_id",
    ),
    partition_column="minute",
    types=(
        "text",
        "timestamptz",
        "int8[]",
        "int8[]",
        "int8[]",
        "int8[]",
        "int8[]",
        "int4",
        "int4",
        "int4",
        "text[]",
        "uuid",
    ),
    key=("server_id", "minute"),
)

STATES = ("player", "spectator", "lobby", "menu")


def snapshot_row(msg: pb.MinuteSnapshot, limits: Limits, batch_id: uuid.UUID) -> tuple:
    server_id = _text(msg.server_id, "server_id", max_len=128)
    minute = _minute(msg, "minute", limits)
    clients = msg.clients
    limit = limits.max_ids_per_list
    total = _user_ids(clients.total, "clients.total", limit)
    states = []
    for state in STATES:
        ids = _user_ids(getattr(clients, state), f"clients.{state}", limit)
        if ids.values.size and not np.isin(ids.values, total.values, assume_unique=True).all():
            raise RecordRefused(f"clients.{state} lists users missing from clients.total")
        states.append(ids)
    battles = msg.battles
    b_total = _count(battles.total, "battles.total")
    b_lobby = _count(battles.lobby, "battles.lobby")
    b_progress = _count(battles.in_progress, "battles.in_progress")
    if b_lobby + b_progress > b_total:
        raise RecordRefused("battles.lobby + battles.in_progress exceeds battles.total")
    if len(msg.battle_ids) > MAX_BATTLE_IDS:
        raise RecordRefused(f"battle_ids lists more than {MAX_BATTLE_IDS} battles")
    battle_ids = [_text(b, "battle_ids[]", max_len=128) for b in msg.battle_ids]
    if len(set(battle_ids)) != len(battle_ids):
        raise RecordRefused("battle_ids lists a battle more than once")
    if len(battle_ids) > b_total:
        raise RecordRefused(f"battle_ids lists {len(battle_ids)} battles but battles.total is {b_total}")
    return (
        server_id,
        minute,
        *states,
        total,
        b_total,
        b_lobby,
        b_progress,
        battle_ids or None,
        batch_id,
    )


# --------------------------------------------------------------------------- message samples

MESSAGE_SAMPLES = TableSpec(
    table="message_samples",
    columns=(
        "message_id",
        "channel_id",
        "receiver_public_key",
        "sent_at",
        "topics",
        "envelope_id",
        "received_at",
        "batch_id",
    ),
    partition_column="sent_at",
    types=("text", "text", "text", "timestamptz", "bytea", "text", "timestamptz", "uuid"),
    key=("receiver_public_key", "message_id", "sent_at"),
)


def sample_row(msg: pb.MessageSample, limits: Limits, batch_id: uuid.UUID) -> tuple:
    if len(msg.topics) > MAX_TOPICS_BYTES:
        raise RecordRefused(f"topics is larger than {MAX_TOPICS_BYTES} bytes")
    received_at = None
    if msg.HasField("received_at"):
        # client clock: allow it to be a little ahead, but not absurd
        received_at = _time(msg, "received_at", limits)
    message_id = _text(msg.message_id, "message_id", max_len=256)
    key = _text(msg.receiver_public_key, "receiver_public_key", max_len=512)
    if len(key) + len(message_id) > MAX_SAMPLE_KEY_BYTES // 4 and (
        len(key.encode()) + len(message_id.encode()) > MAX_SAMPLE_KEY_BYTES
    ):
        raise RecordRefused(f"receiver_public_key and message_id take more than {MAX_SAMPLE_KEY_BYTES} bytes together")
    return (
        message_id,
        _text(msg.channel_id, "channel_id", max_len=256),
        limits.privacy.receiver_key(key),
        _time(msg, "sent_at", limits),
        msg.topics,
        _text(msg.envelope_id, "envelope_id", max_len=256, required=False),
        received_at,
        batch_id,
    )


# --------------------------------------------------------------------------- host minutes

HOST_METRIC_FIELDS: tuple[tuple[str, float], ...] = (
    ("cpu_percent", 100.0),
    ("cpu_percent_max", 100.0),
    ("load_average_1m", math.inf),
    ("load_average_5m", math.inf),
    ("load_average_15m", math.inf),
    ("memory_total_bytes", INT64_MAX),
    ("memory_used_bytes", INT64_MAX),
    ("memory_free_bytes", INT64_MAX),
    ("memory_percent", 100.0),
    ("memory_percent_max", 100.0),
    ("disk_read_bytes_per_s", math.inf),
    ("disk_write_bytes_per_s", math.inf),
    ("disk_read_ops_per_s", math.inf),
    ("disk_write_ops_per_s", math.inf),
    ("net_recv_bytes_per_s", math.inf),
    ("net_sent_bytes_per_s", math.inf),
    ("net_recv_packets_per_s", math.inf),
    ("net_sent_packets_per_s", math.inf),
)
HOST_METRIC_NAMES = tuple(name for name, _ in HOST_METRIC_FIELDS)
# (at least, at most): a maximum below its average, or more memory used or free than there is, is not a reading
HOST_METRIC_ORDER = (
    ("cpu_percent_max", "cpu_percent"),
    ("memory_percent_max", "memory_percent"),
    ("memory_total_bytes", "memory_used_bytes"),
    ("memory_total_bytes", "memory_free_bytes"),
)
ORDER_SLACK = 1e-9  # an average of equal samples can exceed their maximum by float rounding
HISTOGRAM_FIELDS = ("tick_duration_ms", "player_ping_ms", "packet_latency_ms")
SERVER_FIELDS = ("tick_rate", "connections", "players", "entities", "packet_loss_percent")

HOST_MINUTES = TableSpec(
    table="host_minutes",
    columns=(
        "host_id",
        "minute",
        "samples",
        "cpu_percent_per_core",
        *(name for name, _ in HOST_METRIC_FIELDS),
        *HISTOGRAM_FIELDS,
        *SERVER_FIELDS,
        "batch_id",
    ),
    partition_column="minute",
    types=(
        "text",
        "timestamptz",
        "int4",
        "float8[]",
        *(
            "int8" if name.startswith("memory_") and name.endswith("_bytes") else "float8"
            for name, _ in HOST_METRIC_FIELDS
        ),
        *("jsonb" for _ in HISTOGRAM_FIELDS),
        "float8",
        "int4",
        "int4",
        "int4",
        "float8",
        "uuid",
    ),
    key=("host_id", "minute"),
)


def histogram_json(h: pb.LogHistogram, field: str) -> str:
    """The histogram as the compact jsonb document stored in raw.host_minutes."""
    if len(h.bucket_index) != len(h.bucket_count):
        raise RecordRefused(f"{field}: bucket_index and bucket_count differ in length")
    if len(h.bucket_index) > MAX_HISTOGRAM_BUCKETS:
        raise RecordRefused(f"{field} has more than {MAX_HISTOGRAM_BUCKETS} buckets")
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


def host_row(msg: pb.HostMinute, limits: Limits, batch_id: uuid.UUID) -> tuple:
    host_id = _text(msg.host_id, "host_id", max_len=128)
    minute = _minute(msg, "minute", limits)
    if len(msg.cpu_percent_per_core) > MAX_CORES:
        raise RecordRefused(f"cpu_percent_per_core lists more than {MAX_CORES} cores")
    per_core = [_number(v, "cpu_percent_per_core[]", high=100.0) for v in msg.cpu_percent_per_core]
    metrics = [_number(getattr(msg, name), name, high=high) for name, high in HOST_METRIC_FIELDS]
    named = dict(zip(HOST_METRIC_NAMES, metrics, strict=True))
    for high, low in HOST_METRIC_ORDER:
        if named[high] < named[low] - ORDER_SLACK:
            raise RecordRefused(f"{high}={named[high]} is less than {low}={named[low]}")
    if msg.HasField("server"):
        s = msg.server
        histograms = [histogram_json(getattr(s, f), f) if s.HasField(f) else None for f in HISTOGRAM_FIELDS]
        server = [
            _number(s.tick_rate, "server.tick_rate"),
            _count(s.connections, "server.connections"),
            _count(s.players, "server.players"),
            _count(s.entities, "server.entities"),
            _number(s.packet_loss_percent, "server.packet_loss_percent", high=100.0),
        ]
    else:
        histograms = [None] * len(HISTOGRAM_FIELDS)
        server = [None] * len(SERVER_FIELDS)
    return (
        host_id,
        minute,
        _count(msg.samples, "samples"),
        per_core,
        *metrics,
        *histograms,
        *server,
        batch_id,
    )


# --------------------------------------------------------------------------- product events

PRODUCT_EVENTS = TableSpec(
    table="product_events",
    columns=(
        "event_id",
        "schema_version",
        "channel",
        "event",
        "timestamp",
        "user_id",
        "session_id",
        "payload",
        "batch_id",
    ),
    partition_column="timestamp",
    types=("text", "text", "text", "text", "timestamptz", "text", "text", "jsonb", "uuid"),
    key=("event_id", "timestamp"),
)

ACCOUNTS_CREATED = TableSpec(
    table="accounts_created",
    columns=("event_id", "user_id", "created_at", "batch_id"),
    partition_column="created_at",
    types=("text", "text", "timestamptz", "uuid"),
    key=("event_id", "created_at"),
)


def _reject_constant(name: str) -> float:
    raise RecordRefused(f"payload contains {name}, which is not JSON")


def _number_text(text: str) -> str:
    """Integers are only validated, never used: keeping their text avoids Python's 4,300-digit int limit, which
    PostgreSQL's jsonb does not have."""
    return text


# built once: they are on the hot path
_PAYLOAD_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_number_text)
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


def without_excluded(text: str | bytes, privacy: Privacy, under: str | None = None) -> str | bytes | None:
    """The JSON object ``text`` with the excluded payload fields removed (the payload is ``text`` itself, or its
    member ``under``); ``text`` itself when there is nothing to remove; None when it cannot be parsed (it might
    hold an excluded field under any spelling, ``\\u`` escapes included), when the payload is not an object (its
    arrays are not looked into) or when it cannot be re-encoded, so that nothing of it should be kept."""
    try:
        value = _EXACT_DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, RecursionError):  # RecordRefused and UnicodeDecodeError are ValueErrors
        return None
    if under is not None and isinstance(value, dict) and under not in value:
        return text  # no payload at all
    payload = value.get(under) if under is not None and isinstance(value, dict) else value
    if not isinstance(payload, dict):
        return None  # an array (or worse) may hold the field anywhere inside
    if not privacy.has_excluded(payload):
        return text
    privacy.drop_excluded(payload)
    try:
        encoded = _EXACT_ENCODER.encode(value)
    except (UnicodeEncodeError, msgspec.EncodeError):  # a lone surrogate escape, which no UTF-8 can carry
        return None
    return encoded if isinstance(text, bytes) else encoded.decode()


def payload_json(text: str, max_bytes: int, privacy: Privacy = NO_PRIVACY) -> str:
    """Validate a JSON object payload; returns the text to store (without the fields ``privacy`` excludes)."""
    if not text:
        return "{}"
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise RecordRefused(f"payload is larger than {max_bytes} bytes")
    if "\x00" in text or ("\\u0000" in text and _ESCAPED_NUL.search(text)):
        raise RecordRefused("payload contains a NUL character")
    if nests_too_deep(text):
        raise RecordRefused(f"payload nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = _PAYLOAD_DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        if isinstance(error, RecordRefused):
            raise
        raise RecordRefused(f"payload is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RecordRefused("payload must be a JSON object")
    if privacy.payload_exclude and privacy.has_excluded(value):
        cleaned = without_excluded(text, privacy)
        if cleaned is None:
            raise RecordRefused("payload holds a character no UTF-8 text can carry (a lone surrogate escape)")
        return cleaned or "{}"  # type: ignore[return-value]
    return text


def event_row(msg: pb.ProductEvent, limits: Limits, batch_id: uuid.UUID) -> tuple:
    if msg.schema_version not in ("", SCHEMA_VERSION):
        raise RecordRefused(f"schema_version must be {SCHEMA_VERSION!r}")
    return (
        _text(msg.event_id, "event_id", max_len=128),
        SCHEMA_VERSION,
        _text(msg.channel, "channel", max_len=128),
        _text(msg.event, "event", max_len=128),
        _time(msg, "timestamp", limits),
        _text(msg.user_id, "user_id", max_len=128),
        _text(msg.session_id, "session_id", max_len=128, required=False) or None,
        payload_json(msg.payload_json, limits.max_payload_bytes, limits.privacy),
        batch_id,
    )


def is_account_created(row: tuple) -> bool:
    return row[2] == "user" and row[3] == "account_created"


def account_row(event: tuple) -> tuple:
    """The raw.accounts_created row of an accepted ``account_created`` event row."""
    return (event[0], event[5], event[4], event[8])


RowBuilder = Callable[[object, Limits, uuid.UUID], tuple]


# --------------------------------------------------------------------------- what is kept of refused records

WITHHELD_NOTE = (
    "payload withheld from this reject: it could not be parsed while payload field exclusions are configured "
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
    """The refused protobuf record as raw.rejects keeps it: as sent, with the receiver key hashed and excluded
    payload fields removed; a payload that cannot be cleaned (unparseable while exclusions are configured) is
    withheld."""
    if not privacy.active:
        return Kept(msg.SerializeToString())  # type: ignore[attr-defined]
    if isinstance(msg, pb.MessageSample) and privacy.receiver_key_salt is not None and msg.receiver_public_key:
        copy = pb.MessageSample()
        copy.CopyFrom(msg)
        copy.receiver_public_key = privacy.receiver_key(msg.receiver_public_key)
        return Kept(copy.SerializeToString())
    if isinstance(msg, pb.ProductEvent) and privacy.payload_exclude and msg.payload_json:
        cleaned = without_excluded(msg.payload_json, privacy)
        if cleaned is not msg.payload_json:
            copy = pb.ProductEvent()
            copy.CopyFrom(msg)
            copy.payload_json = cleaned or ""  # type: ignore[assignment]
            if cleaned is None:
                return Kept.withheld(copy.SerializeToString(), msg.SerializeToString())
            return Kept(copy.SerializeToString())
    return Kept(msg.SerializeToString())  # type: ignore[attr-defined]


def conflict_reason(spec: TableSpec, first: int, unit: str = "record") -> str:
    return (
        f"conflicting duplicate: {unit} {first} of this batch has the same natural key "
        f"({', '.join(spec.key)}) with other contents; the first one was kept"
    )


def conflicting_rows(spec: TableSpec, rows: Sequence[tuple]) -> list[tuple[int, int]]:
    """(position, position of the first) of each row whose natural key an earlier row of ``rows`` has, with other
    contents: a conflicting duplicate. Copies that agree are left alone: they collapse when they land."""
    key_of = operator.itemgetter(*spec.key_indexes)
    content_of = operator.itemgetter(*spec.content_indexes)
    first: dict[object, int] = {}
    conflicts = []
    for position, row in enumerate(rows):
        earlier = first.setdefault(key_of(row), position)
        if earlier != position and content_of(rows[earlier]) != content_of(row):
            conflicts.append((position, earlier))
    return conflicts
