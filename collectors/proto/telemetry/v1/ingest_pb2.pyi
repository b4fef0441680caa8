import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientStates(_message.Message):
    __slots__ = ("player", "spectator", "lobby", "menu", "total")
    PLAYER_FIELD_NUMBER: _ClassVar[int]
    SPECTATOR_FIELD_NUMBER: _ClassVar[int]
    LOBBY_FIELD_NUMBER: _ClassVar[int]
    MENU_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    player: _containers.RepeatedScalarFieldContainer[int]
    spectator: _containers.RepeatedScalarFieldContainer[int]
    lobby: _containers.RepeatedScalarFieldContainer[int]
    menu: _containers.RepeatedScalarFieldContainer[int]
    total: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, player: _Optional[_Iterable[int]] = ..., spectator: _Optional[_Iterable[int]] = ..., lobby: _Optional[_Iterable[int]] = ..., menu: _Optional[_Iterable[int]] = ..., total: _Optional[_Iterable[int]] = ...) -> None: ...

class BattleCounts(_message.Message):
    __slots__ = ("total", "lobby", "in_progress")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LOBBY_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    total: int
    lobby: int
    in_progress: int
    def __init__(self, total: _Optional[int] = ..., lobby: _Optional[int] = ..., in_progress: _Optional[int] = ...) -> None: ...

class MinuteSnapshot(_message.Message):
    __slots__ = ("server_id", "minute", "clients", "battles", "battle_ids")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    BATTLES_FIELD_NUMBER: _ClassVar[int]
    BATTLE_IDS_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    minute: _timestamp_pb2.Timestamp
    clients: ClientStates
    battles: BattleCounts
    battle_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, server_id: _Optional[str] = ..., minute: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., clients: _Optional[_Union[ClientStates, _Mapping]] = ..., battles: _Optional[_Union[BattleCounts, _Mapping]] = ..., battle_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PushMinuteSnapshotsRequest(_message.Message):
    __slots__ = ("snapshots", "batch_id")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[MinuteSnapshot]
    batch_id: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[MinuteSnapshot, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class PushMinuteSnapshotsResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: IngestAck
    def __init__(self, ack: _Optional[_Union[IngestAck, _Mapping]] = ...) -> None: ...

class MessageSample(_message.Message):
    __slots__ = ("message_id", "channel_id", "receiver_public_key", "sent_at", "topics", "envelope_id", "received_at")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    channel_id: str
    receiver_public_key: str
    sent_at: _timestamp_pb2.Timestamp
    topics: bytes
    envelope_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., channel_id: _Optional[str] = ..., receiver_public_key: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., topics: _Optional[bytes] = ..., envelope_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PushMessageSamplesRequest(_message.Message):
    __slots__ = ("samples", "batch_id")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[MessageSample]
    batch_id: str
    def __init__(self, samples: _Optional[_Iterable[_Union[MessageSample, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class PushMessageSamplesResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: IngestAck
    def __init__(self, ack: _Optional[_Union[IngestAck, _Mapping]] = ...) -> None: ...

class LogHistogram(_message.Message):
    __slots__ = ("bucket_index", "bucket_count", "zero_count", "sum", "min", "max")
    BUCKET_INDEX_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNT_FIELD_NUMBER: _ClassVar[int]
    ZERO_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    bucket_index: _containers.RepeatedScalarFieldContainer[int]
    bucket_count: _containers.RepeatedScalarFieldContainer[int]
    zero_count: int
    sum: float
    min: float
    max: float
    def __init__(self, bucket_index: _Optional[_Iterable[int]] = ..., bucket_count: _Optional[_Iterable[int]] = ..., zero_count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class ServerPerformance(_message.Message):
    __slots__ = ("tick_duration_ms", "player_ping_ms", "packet_latency_ms", "tick_rate", "connections", "players", "entities", "packet_loss_percent")
    TICK_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PLAYER_PING_MS_FIELD_NUMBER: _ClassVar[int]
    PACKET_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TICK_RATE_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    PLAYERS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PACKET_LOSS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    tick_duration_ms: LogHistogram
    player_ping_ms: LogHistogram
    packet_latency_ms: LogHistogram
    tick_rate: float
    connections: int
    players: int
    entities: int
    packet_loss_percent: float
    def __init__(self, tick_duration_ms: _Optional[_Union[LogHistogram, _Mapping]] = ..., player_ping_ms: _Optional[_Union[LogHistogram, _Mapping]] = ..., packet_latency_ms: _Optional[_Union[LogHistogram, _Mapping]] = ..., tick_rate: _Optional[float] = ..., connections: _Optional[int] = ..., players: _Optional[int] = ..., entities: _Optional[int] = ..., packet_loss_percent: _Optional[float] = ...) -> None: ...

class HostMinute(_message.Message):
    __slots__ = ("host_id", "minute", "samples", "cpu_percent", "cpu_percent_max", "cpu_percent_per_core", "load_average_1m", "load_average_5m", "load_average_15m", "memory_total_bytes", "memory_used_bytes", "memory_free_bytes", "memory_percent", "memory_percent_max", "disk_read_bytes_per_s", "disk_write_bytes_per_s", "disk_read_ops_per_s", "disk_write_ops_per_s", "net_recv_bytes_per_s", "net_sent_bytes_per_s", "net_recv_packets_per_s", "net_sent_packets_per_s", "server")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_MAX_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_PER_CORE_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_1M_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_5M_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_15M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_MAX_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_READ_OPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_WRITE_OPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    NET_RECV_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    NET_SENT_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    NET_RECV_PACKETS_PER_S_FIELD_NUMBER: _ClassVar[int]
    NET_SENT_PACKETS_PER_S_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    minute: _timestamp_pb2.Timestamp
    samples: int
    cpu_percent: float
    cpu_percent_max: float
    cpu_percent_per_core: _containers.RepeatedScalarFieldContainer[float]
    load_average_1m: float
    load_average_5m: float
    load_average_15m: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    memory_percent: float
    memory_percent_max: float
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    disk_read_ops_per_s: float
    disk_write_ops_per_s: float
    net_recv_bytes_per_s: float
    net_sent_bytes_per_s: float
    net_recv_packets_per_s: float
    net_sent_packets_per_s: float
    server: ServerPerformance
    def __init__(self, host_id: _Optional[str] = ..., minute: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., samples: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., cpu_percent_max: _Optional[float] = ..., cpu_percent_per_core: _Optional[_Iterable[float]] = ..., load_average_1m: _Optional[float] = ..., load_average_5m: _Optional[float] = ..., load_average_15m: _Optional[float] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_free_bytes: _Optional[int] = ..., memory_percent: _Optional[float] = ..., memory_percent_max: _Optional[float] = ..., disk_read_bytes_per_s: _Optional[float] = ..., disk_write_bytes_per_s: _Optional[float] = ..., disk_read_ops_per_s: _Optional[float] = ..., disk_write_ops_per_s: _Optional[float] = ..., net_recv_bytes_per_s: _Optional[float] = ..., net_sent_bytes_per_s: _Optional[float] = ..., net_recv_packets_per_s: _Optional[float] = ..., net_sent_packets_per_s: _Optional[float] = ..., server: _Optional[_Union[ServerPerformance, _Mapping]] = ...) -> None: ...

class PushHostMinutesRequest(_message.Message):
    __slots__ = ("records", "batch_id")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[HostMinute]
    batch_id: str
    def __init__(self, records: _Optional[_Iterable[_Union[HostMinute, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class PushHostMinutesResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: IngestAck
    def __init__(self, ack: _Optional[_Union[IngestAck, _Mapping]] = ...) -> None: ...

class ProductEvent(_message.Message):
    __slots__ = ("event_id", "schema_version", "channel", "event", "timestamp", "user_id", "session_id", "payload_json", "sample_rate", "dnt")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DNT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    schema_version: str
    channel: str
    event: str
    timestamp: _timestamp_pb2.Timestamp
    user_id: str
    session_id: str
    payload_json: str
    sample_rate: float
    dnt: bool
    def __init__(self, event_id: _Optional[str] = ..., schema_version: _Optional[str] = ..., channel: _Optional[str] = ..., event: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., payload_json: _Optional[str] = ..., sample_rate: _Optional[float] = ..., dnt: _Optional[bool] = ...) -> None: ...

class PushProductEventsRequest(_message.Message):
    __slots__ = ("events", "batch_id")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ProductEvent]
    batch_id: str
    def __init__(self, events: _Optional[_Iterable[_Union[ProductEvent, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class PushProductEventsResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: IngestAck
    def __init__(self, ack: _Optional[_Union[IngestAck, _Mapping]] = ...) -> None: ...

class ServerReport(_message.Message):
    __slots__ = ("server_id", "timestamp", "document_json")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    timestamp: _timestamp_pb2.Timestamp
    document_json: str
    def __init__(self, server_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., document_json: _Optional[str] = ...) -> None: ...

class PushServerReportsRequest(_message.Message):
    __slots__ = ("reports", "batch_id")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ServerReport]
    batch_id: str
    def __init__(self, reports: _Optional[_Iterable[_Union[ServerReport, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class PushServerReportsResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: IngestAck
    def __init__(self, ack: _Optional[_Union[IngestAck, _Mapping]] = ...) -> None: ...

class RejectedRecord(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "rejects", "batch_id", "retry_indexes")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_INDEXES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: int
    rejects: _containers.RepeatedCompositeFieldContainer[RejectedRecord]
    batch_id: str
    retry_indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., rejects: _Optional[_Iterable[_Union[RejectedRecord, _Mapping]]] = ..., batch_id: _Optional[str] = ..., retry_indexes: _Optional[_Iterable[int]] = ...) -> None: ...
