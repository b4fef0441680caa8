"""The raw tables, each described once.

A :class:`RawTable` says everything the warehouse knows of one landing table: its columns in the order COPY
writes them, each with its PostgreSQL type and how it is read from a record and checked (a small *spec*:
:class:`Text`, :class:`Time`, :class:`Number`, ...), the rules that tie columns together, the partition column,
the natural key, the default retention, the marts it feeds, the dbt source it belongs to and the RPC that lands
it. This module is data only: ``collectors.ingest.rules`` turns the specs into the checks every sender's records
go through, the receiver and the client derive their RPC table from ``rpc``, the settings their retention
defaults, the weekly cleanup "what feeds what", the Great Expectations raw suites their expectations, and the
simulator its table list. A test compares the registry with the migrated database and with dbt's
``__sources.yml``.

Adding a column: a field in ``ingest.proto`` (when senders send it), a :class:`Column` here, a migration, and
the staging model that reads it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from google.protobuf.message import Message

from collectors.proto.telemetry.v1 import ingest_pb2 as pb

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
SCHEMA_VERSION = "telemetry_event_v1"
MAX_JSON_DEPTH = 100  # arrays and objects in a payload
# raw.message_samples' unique index holds receiver_public_key and message_id; btree refuses index rows over
# 2704 bytes, which 512 + 256 characters of 4-byte UTF-8 exceed
MAX_SAMPLE_KEY_BYTES = 2400


# --------------------------------------------------------------------------- how a column is read


@dataclass(frozen=True)
class Spec:
    """Where a column's value is in the record (``field``, a dotted path; ``within``: a message field that may
    be absent, and then the column is NULL) and what it must be."""

    field: str
    within: str | None = None

    @property
    def label(self) -> str:
        """How reasons name the field."""
        return f"{self.within}.{self.field}" if self.within else self.field


@dataclass(frozen=True)
class Text(Spec):
    max_len: int = 128
    required: bool = True
    empty_is_null: bool = False  # an empty optional value lands as NULL (else as '')


@dataclass(frozen=True)
class Time(Spec):
    """A ``google.protobuf.Timestamp`` inside the table's retention and at most a few minutes ahead."""

    required: bool = True
    to_minute: bool = False  # truncated to its minute


@dataclass(frozen=True)
class Number(Spec):
    low: float = 0.0
    high: float = math.inf


@dataclass(frozen=True)
class Count(Spec):
    high: int = INT32_MAX


@dataclass(frozen=True)
class Numbers(Spec):
    """A repeated double, each in [low, high]."""

    max_items: int = 4096
    low: float = 0.0
    high: float = math.inf


@dataclass(frozen=True)
class Ids(Spec):
    """A list of user ids: distinct, not negative, at most ``max_ids_per_list`` of them (a setting)."""


@dataclass(frozen=True)
class Strings(Spec):
    """A repeated string: distinct, each a :class:`Text`; NULL when empty."""

    max_items: int = 20_000
    max_len: int = 128
    item: str = "battle"  # what one item is called in reasons


@dataclass(frozen=True)
class Blob(Spec):
    max_bytes: int = 4096


@dataclass(frozen=True)
class ReceiverKey(Text):
    """A receiver public key, replaced by its keyed hash when the privacy settings ask for it."""


@dataclass(frozen=True)
class Histogram(Spec):
    """A :class:`pb.LogHistogram`, stored as compact jsonb."""

    max_buckets: int = 8192


@dataclass(frozen=True)
class Payload(Spec):
    """A JSON object as text, at most ``max_payload_bytes`` (a setting), without the excluded fields."""


@dataclass(frozen=True)
class SchemaVersion(Spec):
    """``telemetry_event_v1``; empty means that."""


@dataclass(frozen=True)
class SampleRate(Spec):
    """The share of users a sender kept, in (0, 1]; unset (0) is 1."""


@dataclass(frozen=True)
class RefusedWhen:
    """A record whose boolean ``field`` is true is refused whole with ``reason`` (nothing of it is read)."""

    field: str
    reason: str


@dataclass(frozen=True)
class Field:
    """A field a document may hold, at a dotted path: a number in [low, high] (each value of it, when the path
    ends in ``[]`` for an array or ``{}`` for an object of numbers); ``whole``: an integer."""

    path: str
    low: float = 0.0
    high: float = math.inf
    whole: bool = False


@dataclass(frozen=True)
class Document(Spec):
    """A JSON object kept as sent, unknown fields included. The ``fields`` it may hold are checked when present;
    ``matches``: record fields the document's own value of the same name must equal when it has one;
    ``not_above``: (path, path) pairs, the first at most the second."""

    max_bytes: int = 64 * 1024
    fields: tuple[Field, ...] = ()
    matches: tuple[str, ...] = ()
    not_above: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------- rules that tie columns together


@dataclass(frozen=True)
class Subsets:
    """Every id of each list in ``lists`` is in list ``of``."""

    lists: tuple[str, ...]
    of: str


@dataclass(frozen=True)
class SumAtMost:
    """The sum of ``parts`` is at most ``whole``."""

    parts: tuple[str, ...]
    whole: str


@dataclass(frozen=True)
class CountAtMost:
    """List ``items`` has at most ``limit`` (a count column) entries."""

    items: str
    limit: str


@dataclass(frozen=True)
class AtLeast:
    """Column ``high`` is at least column ``low`` (a maximum and its average; a total and a part)."""

    high: str
    low: str


@dataclass(frozen=True)
class BytesAtMost:
    """The UTF-8 bytes of ``columns`` together are at most ``limit`` (a btree index row's limit)."""

    columns: tuple[str, ...]
    limit: int


Check = Subsets | SumAtMost | CountAtMost | AtLeast | BytesAtMost


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as binary COPY declares it
    spec: Spec | None = None  # None: not read from the record (the batch id, a derived table's columns)


@dataclass(frozen=True)
class Rpc:
    """How senders land the table: the gRPC method, its request and response, and the request's list field."""

    method: str
    request: type[Message]
    response: type[Message]
    field: str


@dataclass(frozen=True)
class Feed:
    """The table feeds this part of this cadence's marts; ``neighbours``: the windows either side read it too."""

    cadence: str
    part: str
    neighbours: bool = False


BATCH_ID = Column("batch_id", "uuid")


@dataclass(frozen=True)
class RawTable:
    name: str
    source: str  # the dbt source (models/staging/__sources.yml) the table belongs to
    columns: tuple[Column, ...]  # in COPY order; the batch id is always last
    partition_column: str
    key: tuple[str, ...]  # the natural key: the unique constraint's columns (partition column included)
    retention_days: int  # default of TELEMETRY_RETENTION_<NAME>
    feeds: tuple[Feed, ...]
    rpc: Rpc | None = None  # None: its rows come from another table's records
    checks: tuple[Check, ...] = ()
    refused_when: tuple[RefusedWhen, ...] = ()
    stamped: tuple[str, ...] = ("ingested_at",)  # filled by the database when a row lands

    def __post_init__(self) -> None:
        names = self.column_names
        if names[-1] != BATCH_ID.name:
            raise ValueError(f"{self.name}: the batch id must be the last column")
        missing = {self.partition_column, *self.key} - set(names)
        if missing:
            raise ValueError(f"{self.name}: key or partition column not among the columns: {sorted(missing)}")

    @functools.cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @functools.cached_property
    def types(self) -> tuple[str, ...]:
        return tuple(c.type for c in self.columns)

    @functools.cached_property
    def partition_index(self) -> int:
        return self.column_names.index(self.partition_column)

    @functools.cached_property
    def key_indexes(self) -> tuple[int, ...]:
        return tuple(self.column_names.index(name) for name in self.key)

    @functools.cached_property
    def content_indexes(self) -> tuple[int, ...]:
        """Every column but the batch id: what two copies of one record must agree on."""
        return tuple(i for i, name in enumerate(self.column_names) if name != BATCH_ID.name)

    def column(self, name: str) -> Column:
        return self.columns[self.column_names.index(name)]

    def label(self, name: str) -> str:
        """How reasons name a column: its field in the record."""
        spec = self.column(name).spec
        return spec.label if spec is not None else name


STATES = ("player", "spectator", "lobby", "menu")

MINUTE_SNAPSHOTS = RawTable(
    name="minute_snapshots",
    source="game_servers",
    columns=(
        Column("server_id", "text", Text("server_id", max_len=128)),
        Column("minute", "timestamptz", Time("minute", to_minute=True)),
        *(Column(state, "int8[]", Ids(f"clients.{state}")) for state in STATES),
        Column("total", "int8[]", Ids("clients.total")),
        Column("battles_total", "int4", Count("battles.total")),
        Column("battles_lobby", "int4", Count("battles.lobby")),
        Column("battles_in_progress", "int4", Count("battles.in_progress")),
        Column("battle_ids", "text[]", Strings("battle_ids", max_items=20_000, max_len=128)),
        BATCH_ID,
    ),
    partition_column="minute",
    key=("server_id", "minute"),
    retention_days=30,
    feeds=(Feed("daily", "marts"), Feed("weekly", "marts")),
    rpc=Rpc("PushMinuteSnapshots", pb.PushMinuteSnapshotsRequest, pb.PushMinuteSnapshotsResponse, "snapshots"),
    checks=(
        Subsets(STATES, of="total"),
        SumAtMost(("battles_lobby", "battles_in_progress"), whole="battles_total"),
        CountAtMost("battle_ids", limit="battles_total"),
    ),
)

MESSAGE_SAMPLES = RawTable(
    name="message_samples",
    source="chat",
    columns=(
        Column("message_id", "text", Text("message_id", max_len=256)),
        Column("channel_id", "text", Text("channel_id", max_len=256)),
        Column("receiver_public_key", "text", ReceiverKey("receiver_public_key", max_len=512)),
        Column("sent_at", "timestamptz", Time("sent_at")),
        Column("topics", "bytea", Blob("topics", max_bytes=4096)),
        Column("envelope_id", "text", Text("envelope_id", max_len=256, required=False)),
        Column("received_at", "timestamptz", Time("received_at", required=False)),
        BATCH_ID,
    ),
    partition_column="sent_at",
    key=("receiver_public_key", "message_id", "sent_at"),
    retention_days=7,
    # a receiver counts for a window when heard before and after it: the neighbouring windows read a day too
    feeds=tuple(Feed(c, "reliability", neighbours=True) for c in ("hourly", "daily", "weekly")),
    rpc=Rpc("PushMessageSamples", pb.PushMessageSamplesRequest, pb.PushMessageSamplesResponse, "samples"),
    checks=(BytesAtMost(("receiver_public_key", "message_id"), MAX_SAMPLE_KEY_BYTES),),
    stamped=("created_at",),
)

HOST_METRICS: tuple[tuple[str, float], ...] = (
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
HISTOGRAMS = ("tick_duration_ms", "player_ping_ms", "packet_latency_ms")

HOST_MINUTES = RawTable(
    name="host_minutes",
    source="hosts",
    columns=(
        Column("host_id", "text", Text("host_id", max_len=128)),
        Column("minute", "timestamptz", Time("minute", to_minute=True)),
        Column("samples", "int4", Count("samples")),
        Column("cpu_percent_per_core", "float8[]", Numbers("cpu_percent_per_core", max_items=4096, high=100.0)),
        *(
            Column(name, "int8" if name.endswith("_bytes") else "float8", Number(name, high=high))
            for name, high in HOST_METRICS
        ),
        *(Column(name, "jsonb", Histogram(name, within="server")) for name in HISTOGRAMS),
        Column("tick_rate", "float8", Number("tick_rate", within="server")),
        Column("connections", "int4", Count("connections", within="server")),
        Column("players", "int4", Count("players", within="server")),
        Column("entities", "int4", Count("entities", within="server")),
        Column("packet_loss_percent", "float8", Number("packet_loss_percent", within="server", high=100.0)),
        BATCH_ID,
    ),
    partition_column="minute",
    key=("host_id", "minute"),
    retention_days=30,
    feeds=(Feed("hourly", "marts"), Feed("daily", "marts"), Feed("weekly", "marts")),
    rpc=Rpc("PushHostMinutes", pb.PushHostMinutesRequest, pb.PushHostMinutesResponse, "records"),
    checks=(
        AtLeast("cpu_percent_max", "cpu_percent"),
        AtLeast("memory_percent_max", "memory_percent"),
        AtLeast("memory_total_bytes", "memory_used_bytes"),
        AtLeast("memory_total_bytes", "memory_free_bytes"),
    ),
)

PRODUCT_EVENTS = RawTable(
    name="product_events",
    source="product",
    columns=(
        Column("event_id", "text", Text("event_id", max_len=128)),
        Column("schema_version", "text", SchemaVersion("schema_version")),
        Column("channel", "text", Text("channel", max_len=128)),
        Column("event", "text", Text("event", max_len=128)),
        Column("timestamp", "timestamptz", Time("timestamp")),
        Column("user_id", "text", Text("user_id", max_len=128)),
        Column("session_id", "text", Text("session_id", max_len=128, required=False, empty_is_null=True)),
        Column("payload", "jsonb", Payload("payload_json")),
        Column("sample_rate", "float8", SampleRate("sample_rate")),
        BATCH_ID,
    ),
    partition_column="timestamp",
    key=("event_id", "timestamp"),
    retention_days=90,
    feeds=(Feed("daily", "marts"), Feed("weekly", "marts")),
    rpc=Rpc("PushProductEvents", pb.PushProductEventsRequest, pb.PushProductEventsResponse, "events"),
    refused_when=(RefusedWhen("dnt", "the user opted out of tracking (dnt): the event is not stored"),),
)

# The rows of `account_created` events on channel `user`, from raw.product_events' rows of the same batch.
ACCOUNTS_CREATED = RawTable(
    name="accounts_created",
    source="product",
    columns=(
        Column("event_id", "text"),
        Column("user_id", "text"),
        Column("created_at", "timestamptz"),
        BATCH_ID,
    ),
    partition_column="created_at",
    key=("event_id", "created_at"),
    retention_days=90,
    feeds=(Feed("daily", "marts"), Feed("weekly", "marts")),
)

# A game server's report every few seconds (its own POST /api/v1/telemetry document), landed as sent; dbt rolls the
# reports up per minute, hour, day and week.
SERVER_REPORTS = RawTable(
    name="server_reports",
    source="game_servers",
    columns=(
        Column("server_id", "text", Text("server_id", max_len=128)),
        Column("reported_at", "timestamptz", Time("timestamp")),
        Column(
            "document",
            "jsonb",
            Document(
                "document_json",
                max_bytes=64 * 1024,
                fields=(
                    Field("hardware.cpu_usage_percent", high=100.0),
                    Field("hardware.cpu_usage_per_core[]", high=100.0),
                    Field("hardware.memory_used_bytes", high=INT64_MAX, whole=True),
                    Field("hardware.memory_total_bytes", high=INT64_MAX, whole=True),
                    Field("hardware.memory_usage_percent", high=100.0),
                    Field("network.packets_per_sec_incoming"),
                    Field("network.packets_per_sec_outgoing"),
                    Field("network.avg_player_ping_ms"),
                    Field("network.player_ping_percentiles.p50"),
                    Field("network.player_ping_percentiles.p95"),
                    Field("network.player_ping_percentiles.p99"),
                    Field("network.active_connections", high=INT32_MAX, whole=True),
                    Field("network.packet_loss_percent", high=100.0),
                    Field("performance.tick_rate_fps"),
                    Field("performance.target_fps"),
                    Field("performance.avg_tick_duration_ms"),
                    Field("performance.tick_duration_percentiles.p50"),
                    Field("performance.tick_duration_percentiles.p95"),
                    Field("performance.tick_duration_percentiles.p99"),
                    Field("game.active_player_count", high=INT32_MAX, whole=True),
                    Field("game.entities_per_map{}", high=INT64_MAX, whole=True),
                ),
                matches=("server_id",),
                not_above=(("hardware.memory_used_bytes", "hardware.memory_total_bytes"),),
            ),
        ),
        BATCH_ID,
    ),
    partition_column="reported_at",
    key=("server_id", "reported_at"),
    retention_days=30,
    feeds=(Feed("hourly", "marts"), Feed("daily", "marts"), Feed("weekly", "marts")),
    rpc=Rpc("PushServerReports", pb.PushServerReportsRequest, pb.PushServerReportsResponse, "reports"),
)

RAW_TABLES: tuple[RawTable, ...] = (
    MINUTE_SNAPSHOTS,
    MESSAGE_SAMPLES,
    HOST_MINUTES,
    PRODUCT_EVENTS,
    ACCOUNTS_CREATED,
    SERVER_REPORTS,
)
BY_NAME: dict[str, RawTable] = {t.name: t for t in RAW_TABLES}
TABLE_NAMES: tuple[str, ...] = tuple(BY_NAME)
SENT: tuple[RawTable, ...] = tuple(t for t in RAW_TABLES if t.rpc is not None)  # what senders push
BY_METHOD: dict[str, RawTable] = {t.rpc.method: t for t in SENT if t.rpc is not None}
