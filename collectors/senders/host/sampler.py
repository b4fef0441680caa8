"""Read one :class:`Sample` of this host with psutil (a handful of /proc reads, about a millisecond)."""

from __future__ import annotations

import time

import psutil

from collectors.senders.host.rollup import Sample


class HostSampler:
    """Takes samples; CPU percentages are measured since the previous call, so the first call primes them."""

    def __init__(self) -> None:
        psutil.cpu_percent(percpu=True)  # prime: the next call measures from here

    def sample(self, now: float | None = None) -> Sample:
        per_core = tuple(psutil.cpu_percent(percpu=True))
        memory = psutil.virtual_memory()
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        disk_counters = (disk.read_bytes, disk.write_bytes, disk.read_count, disk.write_count) if disk else (0, 0, 0, 0)
        net_counters = (net.bytes_recv, net.bytes_sent, net.packets_recv, net.packets_sent) if net else (0, 0, 0, 0)
        return Sample(
            time=time.time() if now is None else now,
            cpu_percent=sum(per_core) / len(per_core) if per_core else 0.0,
            cpu_percent_per_core=per_core,
            load_average=psutil.getloadavg(),
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.used,
            # "free" = available to new work (free + reclaimable cache), as psutil's percent counts it
            memory_free_bytes=memory.available,
            memory_percent=memory.percent,
            counters=(*disk_counters, *net_counters),
        )
