"""The receiver's own counters, served on the Prometheus /metrics endpoint."""

from prometheus_client import Counter, Gauge, Histogram

BATCHES = Counter(
    "telemetry_receiver_batches",
    "Batches received, by raw table and outcome (stored, empty, malformed, too_large, not_received, rate_limited, "
    "unavailable, failed)",
    ["source", "outcome"],
)
RECORDS = Counter(
    "telemetry_receiver_records",
    "Records in stored batches, by raw table and outcome (accepted, duplicate, rejected, deferred)",
    ["source", "outcome"],
)
BATCH_SECONDS = Histogram(
    "telemetry_receiver_batch_seconds",
    "Time from request to commit of a stored batch",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNAUTHENTICATED = Counter("telemetry_receiver_unauthenticated", "Calls refused for a missing or wrong token")
INFLIGHT_BYTES = Gauge("telemetry_receiver_inflight_bytes", "Request bytes being parsed and written now")
DATABASE_UP = Gauge("telemetry_receiver_database_up", "1 while the receiver's database watch reaches the warehouse")
