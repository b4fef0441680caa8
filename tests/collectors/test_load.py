"""Sustained load: concurrent senders on loopback against the receiver as its own process, for a bounded time.

Reports throughput, ack latency (p50, p99) and the receiver's memory (RSS after warm-up and at the end), and
checks that no record was lost or stored twice and that memory does not grow. ``TELEMETRY_LOAD_SECONDS``
(default 40) and ``TELEMETRY_LOAD_SENDERS`` (default 8) size it: run it for minutes by hand, e.g.
``TELEMETRY_LOAD_SECONDS=300 .venv/bin/pytest -m load -s``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.collectors.conftest import report_figures
from tests.collectors.loadgen import Sender, assert_exactly_once, check_exactly_once, percentile

pytestmark = pytest.mark.load

SECONDS = float(os.environ.get("TELEMETRY_LOAD_SECONDS", "40"))
SENDERS = int(os.environ.get("TELEMETRY_LOAD_SENDERS", "8"))
BATCH = 200
MAX_RSS_GROWTH = 24 << 20  # after warm-up; allocator noise stays well under this, a leak per batch does not


def test_sustained_load(receiver_process, warehouse_url: str, tmp_path: Path) -> None:
    process, target = receiver_process()
    receiver = psutil.Process(process.pid)
    stop = threading.Event()
    senders = [Sender(f"L{i}", target, tmp_path / f"L{i}", stop, batch=BATCH) for i in range(SENDERS)]
    rss: list[tuple[float, int]] = []
    started = time.perf_counter()
    for sender in senders:
        sender.start()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        rss.append((elapsed, receiver.memory_info().rss))
        assert not any(s.error for s in senders), [s.error for s in senders]
        time.sleep(0.5)
    stop.set()
    for sender in senders:
        sender.join(60)
    load_seconds = time.perf_counter() - started
    for sender in senders:
        assert sender.error is None, sender.error
        sender.drain()
    rss.append((time.perf_counter() - started, receiver.memory_info().rss))
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0

    tally = check_exactly_once(warehouse_url, senders)
    latencies = [x for s in senders for x in s.latencies]
    warm = next(r for t, r in rss if t >= min(10.0, SECONDS / 4))
    tail = [r for t, r in rss if t >= SECONDS * 3 / 4]
    growth = max(tail) - warm
    report_figures(
        "load.receiver",
        senders=SENDERS,
        seconds=round(load_seconds, 1),
        records_per_s=round(tally.acknowledged / load_seconds),
        batches=len(latencies),
        ack_p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        ack_p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        ack_max_ms=round(max(latencies) * 1000, 1),
        rss_after_warmup_mb=round(warm / 2**20, 1),
        rss_end_mb=round(rss[-1][1] / 2**20, 1),
        rss_growth_mb=round(growth / 2**20, 1),
        **tally.figures(),
    )
    assert_exactly_once(tally)
    assert tally.spooled_batches == 0  # no outage here: every batch acknowledged at once
    assert growth < MAX_RSS_GROWTH, f"receiver RSS grew {growth / 2**20:.1f} MiB after warm-up"
