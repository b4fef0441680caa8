"""The receiver's metrics, served on the Prometheus /metrics endpoint (the process-wide default registry).

Conventions (``promtool check metrics`` passes): counters end in ``_total`` and leave rates to ``rate()``; values
are in base units (seconds, bytes) and shares are ratios 0-1; the series of one metric sum to something
meaningful. Four kinds:

- the ingest core's own counters (``telemetry_receiver_*``);
- the standard gRPC server metrics (``grpc_server_*``: calls started and handled by method and code, handling
  time, calls in flight), by :class:`GrpcMetricsInterceptor`;
- the database connection pool (``telemetry_receiver_db_pool_*``), read from psycopg_pool's ``get_stats()`` at
  each scrape;
- live gauges of each game server's latest report (``server_*{server_id}``), by :data:`LIVE_SERVERS`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
import msgspec
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

BATCHES = Counter(
    "telemetry_receiver_batches_total",
    "Batches received, by raw table and outcome (stored, empty, malformed, too_large, not_received, rate_limited, "
    "unavailable, failed)",
    ["source", "outcome"],
)
RECORDS = Counter(
    "telemetry_receiver_records_total",
    "Records in stored batches, by raw table and outcome (accepted, duplicate, rejected, deferred)",
    ["source", "outcome"],
)
BATCH_SECONDS = Histogram(
    "telemetry_receiver_batch_seconds",
    "Time from request to commit of a stored batch",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNAUTHENTICATED = Counter("telemetry_receiver_unauthenticated_total", "Calls refused for a missing or wrong token")
INFLIGHT_BYTES = Gauge("telemetry_receiver_inflight_bytes", "Request bytes being parsed and written now")
DATABASE_UP = Gauge("telemetry_receiver_database_up", "1 while the receiver's database watch reaches the warehouse")


# --------------------------------------------------------------------------- gRPC server metrics

_GRPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
GRPC_STARTED = Counter("grpc_server_started_total", "gRPC calls started on the server", _GRPC_LABELS)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "gRPC calls completed on the server, by status code", [*_GRPC_LABELS, "grpc_code"]
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of a gRPC call to its completion on the server",
    _GRPC_LABELS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GRPC_IN_FLIGHT = Gauge("grpc_server_calls_in_flight", "gRPC calls being handled now", _GRPC_LABELS)


_RPC_TYPES = {(False, False): "unary", (True, False): "client_stream", (False, True): "server_stream"}


@functools.lru_cache(maxsize=256)
def _declared(service: str, method: str) -> tuple[bool, bool] | None:
    """(client streaming, server streaming) of a method a .proto compiled into this process declares, else None."""
    try:
        declared = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        return None
    return declared.client_streaming, declared.server_streaming


def call_labels(full_method: str, handler: grpc.RpcMethodHandler) -> tuple[str, str, str]:
    """(grpc_type, grpc_service, grpc_method) of a call. The type is the one its .proto declares: the ingest
    methods are served as request streams (to read the raw bytes, see the receiver's handlers) but are unary
    calls to every client. A method no .proto here declares is ``unknown``: the name comes from the caller
    (refused for its token before gRPC looks it up), and a label must not take any value a caller sends."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    declared = _declared(service, method)
    if declared is None:
        service = method = "unknown"
        declared = (handler.request_streaming, handler.response_streaming)
    return _RPC_TYPES.get(declared, "bidi_stream"), service, method


def _go_name(code: grpc.StatusCode) -> str:
    """``INVALID_ARGUMENT`` as grpc-go and go-grpc-prometheus spell it (``InvalidArgument``; ``Canceled``), which
    dashboards and alert rules for gRPC servers expect."""
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "OK" if code is grpc.StatusCode.OK else "".join(part.title() for part in code.name.split("_"))


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if not isinstance(code, grpc.StatusCode):  # None (never set: OK) or the number of a code
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.OK)
    if context.cancelled() and code is grpc.StatusCode.OK:
        code = grpc.StatusCode.CANCELLED
    return _go_name(code)


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}``, ``grpc_server_handling_seconds``
    and ``grpc_server_calls_in_flight`` for every call that gets a handler (health and reflection included).
    Placed first, it also sees the calls the token check refuses (UNAUTHENTICATED). A call gRPC itself answers
    UNIMPLEMENTED (an unknown method with a valid token) has no handler to observe and is not counted."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        labels = call_labels(handler_call_details.method, handler)
        kind = (
            "stream_stream"
            if handler.request_streaming and handler.response_streaming
            else "stream_unary"
            if handler.request_streaming
            else "unary_stream"
            if handler.response_streaming
            else "unary_unary"
        )
        behaviour = getattr(handler, kind)
        return handler._replace(**{kind: self._wrap(behaviour, labels)})

    @staticmethod
    def _begin(labels: tuple[str, str, str], context: grpc.aio.ServicerContext) -> None:
        started = time.perf_counter()
        GRPC_STARTED.labels(*labels).inc()
        in_flight = GRPC_IN_FLIGHT.labels(*labels)
        in_flight.inc()

        def done(ctx: grpc.aio.ServicerContext) -> None:  # called once the call is over, however it ended
            in_flight.dec()
            GRPC_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            GRPC_HANDLED.labels(*labels, _code_name(ctx)).inc()

        context.add_done_callback(done)

    def _wrap(self, behaviour: Callable, labels: tuple[str, str, str]) -> Callable:
        # grpc.aio calls a handler by its kind (coroutine, async generator, plain function): the wrapper keeps it
        begin = self._begin
        if inspect.iscoroutinefunction(behaviour):

            async def wrapped(request, context):
                begin(labels, context)
                return await behaviour(request, context)

        elif inspect.isasyncgenfunction(behaviour):

            async def wrapped(request, context):
                begin(labels, context)
                async for response in behaviour(request, context):
                    yield response

        else:

            def wrapped(request, context):
                begin(labels, context)
                return behaviour(request, context)

        return wrapped


# --------------------------------------------------------------------------- the connection pool


class PoolStats(Collector):
    """The receivers' database connection pools (psycopg_pool ``get_stats()``), summed over the pools of this
    process (one per receiver; several only in tests)."""

    def __init__(self) -> None:
        self._pools: list = []
        self._lock = threading.Lock()

    def watch(self, pool) -> None:
        with self._lock:
            self._pools.append(pool)

    def forget(self, pool) -> None:
        with self._lock:
            self._pools = [p for p in self._pools if p is not pool]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families({})

    def collect(self) -> Iterable[GaugeMetricFamily]:
        totals: dict[str, float] = {}
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            stats = pool.get_stats()
            for key in ("pool_size", "pool_available", "pool_max", "requests_waiting"):
                totals[key] = totals.get(key, 0) + stats.get(key, 0)
        return self._families(totals)

    @staticmethod
    def _families(totals: dict[str, float]) -> list[GaugeMetricFamily]:
        size, available = totals.get("pool_size", 0), totals.get("pool_available", 0)
        values = (
            ("connections", "Database connections the pool holds open, idle or in use", size),
            ("connections_in_use", "Database connections lent to a batch now", max(0, size - available)),
            ("connections_max", "Most database connections the pool may open", totals.get("pool_max", 0)),
            ("requests_waiting", "Batches waiting for a database connection now", totals.get("requests_waiting", 0)),
        )
        return [
            GaugeMetricFamily(f"telemetry_receiver_db_pool_{name}", text, value=value if totals else None)
            for name, text, value in values
        ]


POOLS = PoolStats()
REGISTRY.register(POOLS)


# --------------------------------------------------------------------------- live gauges of the game servers


@dataclass(frozen=True)
class ServerGauge:
    """One gauge of a game server's report: the metric, the report field it shows (a dotted path in the
    server's document), and the factor from the field's unit to the metric's base unit."""

    name: str
    path: str
    help: str
    scale: float = 1.0


# Named after the report's fields, in base units: the report's ``_percent`` become ratios 0-1 (``_ratio``), ``_ms``
# seconds, ``packets_per_sec_*`` ``packets_*_per_second``; ``tick_rate_fps`` keeps its name (ticks per second,
# the unit the game server's alert thresholds are in).
SERVER_GAUGES: tuple[ServerGauge, ...] = (
    ServerGauge("server_cpu_usage_ratio", "hardware.cpu_usage_percent", "CPU use over all cores, 0-1", 0.01),
    ServerGauge("server_memory_used_bytes", "hardware.memory_used_bytes", "Memory in use"),
    ServerGauge("server_memory_total_bytes", "hardware.memory_total_bytes", "Memory installed"),
    ServerGauge("server_memory_usage_ratio", "hardware.memory_usage_percent", "Memory in use, 0-1", 0.01),
    ServerGauge(
        "server_packets_incoming_per_second", "network.packets_per_sec_incoming", "Incoming packets per second"
    ),
    ServerGauge(
        "server_packets_outgoing_per_second", "network.packets_per_sec_outgoing", "Outgoing packets per second"
    ),
    ServerGauge("server_avg_player_ping_seconds", "network.avg_player_ping_ms", "Average player ping", 0.001),
    ServerGauge("server_player_ping_p50_seconds", "network.player_ping_percentiles.p50", "Player ping, p50", 0.001),
    ServerGauge("server_player_ping_p95_seconds", "network.player_ping_percentiles.p95", "Player ping, p95", 0.001),
    ServerGauge("server_player_ping_p99_seconds", "network.player_ping_percentiles.p99", "Player ping, p99", 0.001),
    ServerGauge("server_active_connections", "network.active_connections", "Open player connections"),
    ServerGauge("server_packet_loss_ratio", "network.packet_loss_percent", "Packet loss, 0-1", 0.01),
    ServerGauge("server_tick_rate_fps", "performance.tick_rate_fps", "Server tick rate, ticks per second"),
    ServerGauge("server_target_fps", "performance.target_fps", "Target tick rate, ticks per second"),
    ServerGauge("server_avg_tick_duration_seconds", "performance.avg_tick_duration_ms", "Average tick duration", 0.001),
    ServerGauge(
        "server_tick_duration_p50_seconds", "performance.tick_duration_percentiles.p50", "Tick duration, p50", 0.001
    ),
    ServerGauge(
        "server_tick_duration_p95_seconds", "performance.tick_duration_percentiles.p95", "Tick duration, p95", 0.001
    ),
    ServerGauge(
        "server_tick_duration_p99_seconds", "performance.tick_duration_percentiles.p99", "Tick duration, p99", 0.001
    ),
    ServerGauge("server_active_players", "game.active_player_count", "Players connected"),
)
LAST_REPORT = "server_last_report_received_timestamp_seconds"


def _number_at(document: object, path: str) -> float | None:
    node = document
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    value = float(node)
    return value if math.isfinite(value) else None


@dataclass
class _Server:
    reported_at: float  # the report's own time (orders the reports of one server)
    received_at: float  # when the receiver accepted it (says whether it is fresh)
    values: dict[str, float] = field(default_factory=dict)


class LiveServers(Collector):
    """The latest accepted report of each game server, as gauges labelled ``server_id``.

    A server's gauges show while its latest report is younger than ``fresh_seconds``; after that only
    ``server_last_report_received_timestamp_seconds`` stays (so a silent server can be alerted on, and its last
    CPU figure does not go on firing alerts), until ``forget_seconds`` without a report remove it altogether. At
    most ``max_servers`` are shown: reports of further servers are counted in
    ``telemetry_receiver_live_server_reports_dropped_total`` until a slot is forgotten. A report older than the
    one shown (a late retry) does not replace it.
    """

    def __init__(
        self,
        *,
        fresh_seconds: float = 60.0,
        forget_seconds: float = 3600.0,
        max_servers: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fresh_seconds = fresh_seconds
        self.forget_seconds = forget_seconds
        self.max_servers = max_servers
        self.clock = clock
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def observe(self, server_id: str, reported_at: float | None, document: object) -> bool:
        """Show ``document`` (a decoded report) as ``server_id``'s latest; False when it was not shown."""
        now = self.clock()
        reported_at = now if reported_at is None else reported_at
        values = {g.name: v * g.scale for g in SERVER_GAUGES if (v := _number_at(document, g.path)) is not None}
        if "server_memory_usage_ratio" not in values:
            used, total = values.get("server_memory_used_bytes"), values.get("server_memory_total_bytes")
            if used is not None and total:
                values["server_memory_usage_ratio"] = used / total
        with self._lock:
            known = self._servers.get(server_id)
            if known is not None and reported_at < known.reported_at:
                return False
            if known is None and len(self._servers) >= self.max_servers:
                self._forget_silent(now)
                if len(self._servers) >= self.max_servers:
                    self.dropped += 1
                    return False
            self._servers[server_id] = _Server(reported_at, now, values)
        return True

    def observe_reports(self, records: Sequence[object | None], ack: object) -> None:
        """After a batch of ``ServerReport`` records committed: show each stored one (not refused, not left for a
        retry; a duplicate is the same report again, harmless)."""
        skip = {r.index for r in ack.rejects} | set(ack.retry_indexes)
        for index, record in enumerate(records):
            if record is None or index in skip:
                continue
            try:
                document = msgspec.json.decode(record.document_json)
                stamp = record.timestamp
                reported_at = stamp.seconds + stamp.nanos / 1e9 if record.HasField("timestamp") else None
                self.observe(record.server_id, reported_at, document)
            except Exception:  # the batch is committed: a gauge must never turn its ack into an error
                log.exception("report %d of %r not shown as live gauges", index, record.server_id)

    def clear(self) -> None:
        with self._lock:
            self._servers.clear()

    def _forget_silent(self, now: float) -> None:
        for server_id in [s for s, v in self._servers.items() if now - v.received_at > self.forget_seconds]:
            del self._servers[server_id]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families({}, 0.0)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = self.clock()
        with self._lock:
            self._forget_silent(now)
            servers = dict(self._servers)
        return self._families(servers, now)

    def _families(self, servers: dict[str, _Server], now: float) -> list[GaugeMetricFamily]:
        families = {g.name: GaugeMetricFamily(g.name, g.help, labels=["server_id"]) for g in SERVER_GAUGES}
        last = GaugeMetricFamily(
            LAST_REPORT,
            "When the receiver accepted the server's latest report, seconds since 1970",
            labels=["server_id"],
        )
        for server_id, server in sorted(servers.items()):
            last.add_metric([server_id], server.received_at)
            if now - server.received_at > self.fresh_seconds:
                continue
            for name, value in server.values.items():
                families[name].add_metric([server_id], value)
        shown = GaugeMetricFamily("telemetry_receiver_live_servers", "Game servers with live gauges")
        shown.add_metric([], len(servers))
        dropped = CounterMetricFamily(
            "telemetry_receiver_live_server_reports_dropped_total",
            "Reports not shown as live gauges because max_servers servers are shown already",
            value=self.dropped,
        )
        return [*families.values(), last, shown, dropped]


LIVE_SERVERS = LiveServers()
REGISTRY.register(LIVE_SERVERS)
