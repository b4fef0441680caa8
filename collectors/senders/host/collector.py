"""The collection loop: sample on a fixed cadence, roll up, send each closed period through the client."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client import PushResult
from collectors.senders.client.spool import SpoolWriteError
from collectors.senders.host.exposition import CurrentValues
from collectors.senders.host.rollup import MinuteRollup
from collectors.senders.host.sampler import HostSampler

log = logging.getLogger(__name__)

Send = Callable[[list[pb.HostMinute]], PushResult | None]


@dataclass
class CollectorStats:
    samples: int = 0
    records: int = 0
    push: PushResult = field(default_factory=PushResult)
    held: int = 0  # records neither delivered nor spooled (the spool's disk was full) when the run ended
    dropped: int = 0  # records given up because more than ``max_held`` were waiting


class HostCollector:
    """Samples every ``interval`` s until ``stop`` is set, ``max_records`` were sent or ``duration`` passed.

    Ticks are scheduled on a monotonic clock (no drift); a slow push delays the
    next sample but never skews a rate, because rates divide by the real time
    between samples. The unfinished period is sent at shutdown. When the receiver is down and the
    spool's disk is full, the records of that push stay in memory (at most ``max_held``, a week of
    minutes by default, then the oldest are given up, loudly) and go out first with the next push.
    """

    def __init__(
        self,
        rollup: MinuteRollup,
        send: Send,
        *,
        interval: float = 1.0,
        current: CurrentValues | None = None,
        sampler: HostSampler | None = None,
        max_held: int = 7 * 24 * 60,
    ) -> None:
        self.rollup = rollup
        self.send = send
        self.interval = interval
        self.current = current
        self.sampler = sampler or HostSampler()
        self.stats = CollectorStats()
        self.max_held = max_held
        self.held: list[pb.HostMinute] = []

    def _emit(self, records: list[pb.HostMinute]) -> None:
        if not records and not self.held:
            return
        self.stats.records += len(records)
        batch = self.held + records
        try:
            result = self.send(batch)
        except SpoolWriteError as full:
            if isinstance(full.result, PushResult):
                self.stats.push.merge(full.result)
            self._hold([batch[offset + i] for offset, count in full.unsaved for i in range(count)], full)
            return
        self.held = []
        if result is not None:
            self.stats.push.merge(result)
            if result.spooled_batches:
                log.warning("receiver unavailable: %d record(s) spooled for later", len(batch))
            for index, reason in result.rejects:
                log.error("record for %s refused: %s", batch[index].minute.ToDatetime(), reason)

    def _hold(self, unsaved: list[pb.HostMinute], error: SpoolWriteError) -> None:
        over = len(unsaved) - self.max_held
        if over > 0:
            log.error("%d held record(s) given up: more than %d are waiting for the spool", over, self.max_held)
            self.stats.dropped += over
            unsaved = unsaved[over:]
        self.held = unsaved
        log.error("%s; %d record(s) held in memory and sent first with the next push", error, len(unsaved))

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_records: int | None = None,
        duration: float | None = None,
    ) -> CollectorStats:
        stop = stop or threading.Event()
        started = time.monotonic()
        deadline = started + duration if duration is not None else None
        next_tick = started + self.interval
        while not stop.is_set():
            if stop.wait(max(0.0, next_tick - time.monotonic())):
                break
            next_tick += self.interval
            if next_tick < time.monotonic():  # fell behind (suspend, slow push): skip missed ticks
                next_tick = time.monotonic() + self.interval
            sample = self.sampler.sample()
            self.stats.samples += 1
            if self.current is not None:
                self.current.update(sample)
            self._emit(self.rollup.add(sample))
            if max_records is not None and self.stats.records >= max_records:
                self.stats.held = len(self.held)
                return self.stats
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._emit(self.rollup.flush())
        self.stats.held = len(self.held)
        if self.held:
            log.error("stopping with %d record(s) neither delivered nor spooled", len(self.held))
        return self.stats
