"""Optional Prometheus ``/metrics`` endpoint with the host's current values (the latest sample).

Follows the Prometheus conventions (``promtool check metrics`` passes): shares are ratios 0-1; memory is one
metric per quantity (total, used, available do not add up, so they are not one metric with a label that
``sum()`` would add); disk and network traffic are counters (``_total``) that ``rate()`` turns into rates,
counting only increases the way the minute records do (a counter the OS resets adds nothing); and the client
library's spool depth, read from its directory at each scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from collectors.senders.client.spool import Spool
from collectors.senders.host.rollup import COUNTER_RATE_FIELDS, Sample, counter_increase

# The sample's cumulative counters (in the order of COUNTER_RATE_FIELDS) as Prometheus counters, named as
# node_exporter names its own.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("host_disk_read_bytes_total", "Bytes read from disks"),
    ("host_disk_written_bytes_total", "Bytes written to disks"),
    ("host_disk_reads_completed_total", "Disk reads completed"),
    ("host_disk_writes_completed_total", "Disk writes completed"),
    ("host_network_receive_bytes_total", "Bytes received on network interfaces"),
    ("host_network_transmit_bytes_total", "Bytes sent on network interfaces"),
    ("host_network_receive_packets_total", "Packets received on network interfaces"),
    ("host_network_transmit_packets_total", "Packets sent on network interfaces"),
)
assert len(COUNTERS) == len(COUNTER_RATE_FIELDS)


class CurrentValues:
    """Gauges of the latest sample and counters of the traffic since the collector started, in their own
    registry."""

    def __init__(self, spool: Spool | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cpu = Gauge("host_cpu_usage_ratio", "CPU use over all cores, 0-1", registry=r)
        self.core = Gauge("host_cpu_core_usage_ratio", "CPU use per core, 0-1", ["core"], registry=r)
        self.load = {
            period: Gauge(f"host_load{period}", f"Load average over {period} minute(s)", registry=r)
            for period in ("1", "5", "15")
        }
        self.memory_total = Gauge("host_memory_total_bytes", "Memory installed", registry=r)
        self.memory_used = Gauge("host_memory_used_bytes", "Memory in use", registry=r)
        self.memory_available = Gauge(
            "host_memory_available_bytes", "Memory available to new work (free and reclaimable)", registry=r
        )
        self.memory_usage = Gauge("host_memory_usage_ratio", "Memory in use, 0-1", registry=r)
        self.counters = [Counter(name, text, registry=r) for name, text in COUNTERS]
        self.last_sample = Gauge(
            "host_last_sample_timestamp_seconds", "When the latest sample was taken, seconds since 1970", registry=r
        )
        if spool is not None:
            Gauge(
                "telemetry_client_spool_batches",
                "Batches waiting in the client's spool for the receiver",
                registry=r,
            ).set_function(lambda: len(spool))
            Gauge(
                "telemetry_client_spool_refused_batches",
                "Batches the client set aside in the spool's refused/ (refused for good, or given up)",
                registry=r,
            ).set_function(lambda: len(spool.refused()))
        self._previous: Sample | None = None
        self.server = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the endpoint; returns the bound port (``port`` 0 picks a free one)."""
        self.server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return self.server.server_port

    def update(self, sample: Sample) -> None:
        self.cpu.set(sample.cpu_percent / 100)
        for core, value in enumerate(sample.cpu_percent_per_core):
            self.core.labels(str(core)).set(value / 100)
        for gauge, value in zip(self.load.values(), sample.load_average, strict=True):
            gauge.set(value)
        self.memory_total.set(sample.memory_total_bytes)
        self.memory_used.set(sample.memory_used_bytes)
        self.memory_available.set(sample.memory_free_bytes)
        self.memory_usage.set(sample.memory_percent / 100)
        previous = self._previous
        if previous is not None:
            for counter, before, now in zip(self.counters, previous.counters, sample.counters, strict=True):
                counter.inc(counter_increase(before, now))
        self.last_sample.set(sample.time)
        self._previous = sample

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
