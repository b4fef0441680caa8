"""Optional Prometheus ``/metrics`` endpoint with the host's current values (the latest sample)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from collectors.senders.host.rollup import COUNTER_RATE_FIELDS, Sample


class CurrentValues:
    """Gauges of the latest sample and of the rates over the last interval, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cpu = Gauge("host_cpu_usage_percent", "CPU use over all cores, percent", registry=self.registry)
        self.core = Gauge("host_cpu_core_usage_percent", "CPU use per core, percent", ["core"], registry=self.registry)
        self.load = Gauge("host_load_average", "Load average", ["period"], registry=self.registry)
        self.memory = Gauge("host_memory_bytes", "Memory, bytes", ["kind"], registry=self.registry)
        self.memory_percent = Gauge("host_memory_usage_percent", "Memory use, percent", registry=self.registry)
        self.rates = {
            name: Gauge(f"host_{name}", name.replace("_", " "), registry=self.registry) for name in COUNTER_RATE_FIELDS
        }
        self._previous: Sample | None = None
        self.server = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start the endpoint; returns the bound port (``port`` 0 picks a free one)."""
        self.server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return self.server.server_port

    def update(self, sample: Sample) -> None:
        self.cpu.set(sample.cpu_percent)
        for core, value in enumerate(sample.cpu_percent_per_core):
            self.core.labels(str(core)).set(value)
        for period, value in zip(("1m", "5m", "15m"), sample.load_average, strict=True):
            self.load.labels(period).set(value)
        self.memory.labels("total").set(sample.memory_total_bytes)
        self.memory.labels("used").set(sample.memory_used_bytes)
        self.memory.labels("free").set(sample.memory_free_bytes)
        self.memory_percent.set(sample.memory_percent)
        previous = self._previous
        if previous is not None and sample.time > previous.time:
            elapsed = sample.time - previous.time
            for name, before, now in zip(COUNTER_RATE_FIELDS, previous.counters, sample.counters, strict=True):
                self.rates[name].set(max(0, now - before) / elapsed)
        self._previous = sample

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
