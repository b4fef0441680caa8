"""Roll host samples into one :class:`HostMinute` per period (a minute by default); pure, no I/O.

Feed :meth:`MinuteRollup.add` samples in time order; it returns the records of
the periods that the new sample closed. Rates come from cumulative counters:
the increase between two consecutive samples divided by the time between
them, summed over the period. A counter that goes down (a reset, a wrap the
OS did not hide, a disk that disappeared) contributes nothing for that one
interval: the new value becomes the baseline, so a rate is never negative and
never a spike.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from collectors.proto.telemetry.v1 import ingest_pb2 as pb

# Cumulative counters a sample carries, in the order of Sample.counters, and the field each rate fills.
COUNTER_RATE_FIELDS: tuple[str, ...] = (
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "disk_read_ops_per_s",
    "disk_write_ops_per_s",
    "net_recv_bytes_per_s",
    "net_sent_bytes_per_s",
    "net_recv_packets_per_s",
    "net_sent_packets_per_s",
)


@dataclass(frozen=True)
class Sample:
    """One reading of the host at ``time`` (seconds since the epoch, UTC)."""

    time: float
    cpu_percent: float
    cpu_percent_per_core: tuple[float, ...]
    load_average: tuple[float, float, float]
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    memory_percent: float
    # cumulative counters, in the order of COUNTER_RATE_FIELDS
    counters: tuple[int, ...]


def counter_increase(previous: int, current: int) -> int:
    """How much a cumulative counter grew; 0 when it went down (treated as a reset)."""
    return current - previous if current >= previous else 0


def _percent(value: float) -> float:
    return min(100.0, max(0.0, value)) if math.isfinite(value) else 0.0


@dataclass
class _Period:
    start: float
    samples: list[Sample] = field(default_factory=list)
    increases: list[int] = field(default_factory=lambda: [0] * len(COUNTER_RATE_FIELDS))
    seconds: float = 0.0  # time covered by the counter intervals ending in this period


class MinuteRollup:
    """Accumulates samples of one host and emits a record per period of ``period_seconds``.

    Periods are aligned on multiples of ``period_seconds`` since the epoch, so
    with the default 60 s each record covers one UTC minute and carries its start.
    """

    def __init__(self, host_id: str, period_seconds: float = 60.0) -> None:
        if period_seconds <= 0:
            raise ValueError("period_seconds must be positive")
        self.host_id = host_id
        self.period_seconds = period_seconds
        self._period: _Period | None = None
        self._previous: Sample | None = None

    def period_start(self, time: float) -> float:
        return math.floor(time / self.period_seconds) * self.period_seconds

    def add(self, sample: Sample) -> list[pb.HostMinute]:
        """Add one sample; returns the records of periods it closed (zero or one)."""
        closed: list[pb.HostMinute] = []
        start = self.period_start(sample.time)
        if self._period is not None and start != self._period.start:
            closed.append(self._record(self._period))
            self._period = None
        if self._period is None:
            self._period = _Period(start)
        period = self._period
        previous = self._previous
        if previous is not None and sample.time > previous.time:
            period.seconds += sample.time - previous.time
            for i, (before, now) in enumerate(zip(previous.counters, sample.counters, strict=True)):
                period.increases[i] += counter_increase(before, now)
        period.samples.append(sample)
        self._previous = sample
        return closed

    def flush(self) -> list[pb.HostMinute]:
        """The record of the current, unfinished period (e.g. at shutdown), if it has samples."""
        if self._period is None or not self._period.samples:
            return []
        record = self._record(self._period)
        self._period = None
        return [record]

    def _record(self, period: _Period) -> pb.HostMinute:
        samples = period.samples
        n = len(samples)
        last = samples[-1]
        cores = min(len(s.cpu_percent_per_core) for s in samples)
        per_core = [_percent(sum(s.cpu_percent_per_core[c] for s in samples) / n) for c in range(cores)]
        rates = {
            name: (increase / period.seconds if period.seconds > 0 else 0.0)
            for name, increase in zip(COUNTER_RATE_FIELDS, period.increases, strict=True)
        }
        minute = dt.datetime.fromtimestamp(period.start, dt.UTC)
        record = pb.HostMinute(
            host_id=self.host_id,
            samples=n,
            cpu_percent=_percent(sum(s.cpu_percent for s in samples) / n),
            cpu_percent_max=_percent(max(s.cpu_percent for s in samples)),
            cpu_percent_per_core=per_core,
            load_average_1m=last.load_average[0],
            load_average_5m=last.load_average[1],
            load_average_15m=last.load_average[2],
            memory_total_bytes=max(s.memory_total_bytes for s in samples),
            memory_used_bytes=round(sum(s.memory_used_bytes for s in samples) / n),
            memory_free_bytes=round(sum(s.memory_free_bytes for s in samples) / n),
            memory_percent=_percent(sum(s.memory_percent for s in samples) / n),
            memory_percent_max=_percent(max(s.memory_percent for s in samples)),
            **rates,
        )
        record.minute.FromDatetime(minute)
        return record
