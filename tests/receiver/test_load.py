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
from concurrent import futures
from pathlib import Path

import grpc
import psutil
import pytest

from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from tests.support import records
from tests.support.loadgen import Sender, assert_exactly_once, check_exactly_once, percentile
from tests.support.receivers import TOKEN, report_figures

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


WORST_CASE_BATCHES = 8  # at once, as many as the default workers
MAX_WORST_CASE_RSS = 400 << 20  # the stated bound of the receiver's peak RSS under them (README, guarantees)


def _worst_case_snapshots(ids_per_list: int, batch: int) -> list[pb.MinuteSnapshot]:
    """Snapshots as large as the rules allow: every state list at the cap (distinct 9-digit ids)."""
    snapshots = []
    for s in range(3):
        base = 10**9 + s * 10 * ids_per_list
        total = list(range(base, base + ids_per_list))
        snapshot = pb.MinuteSnapshot(
            server_id=f"worst-{batch}-{s}", minute=records.ts(records.this_minute(2)), battles=pb.BattleCounts()
        )
        snapshot.clients.total.extend(total)
        for state in ("player", "spectator", "lobby", "menu"):
            getattr(snapshot.clients, state).extend(total)
        snapshots.append(snapshot)
    return snapshots


def test_worst_case_batches_stay_under_the_memory_bound(receiver_process, warehouse_url: str) -> None:
    process, target = receiver_process()
    cap = Settings().max_ids_per_list
    requests = [
        pb.PushMinuteSnapshotsRequest(snapshots=_worst_case_snapshots(cap, b)).SerializeToString()
        for b in range(WORST_CASE_BATCHES)
    ]
    assert all(3 << 20 < len(r) < Settings().max_batch_bytes for r in requests), [len(r) for r in requests]
    over_cap = pb.PushMinuteSnapshotsRequest(snapshots=_worst_case_snapshots(2 * cap, 99)[:1]).SerializeToString()
    baseline = psutil.Process(process.pid).memory_info().rss
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)])
    call = channel.unary_unary("/telemetry.v1.TelemetryIngest/PushMinuteSnapshots")
    auth = (("authorization", f"Bearer {TOKEN}"),)
    started = time.perf_counter()
    with futures.ThreadPoolExecutor(WORST_CASE_BATCHES + 1) as pool:
        acks = list(pool.map(lambda r: call(r, metadata=auth, timeout=120), [*requests, over_cap]))
    seconds = time.perf_counter() - started
    channel.close()
    peak = _peak_rss(process.pid)
    after = psutil.Process(process.pid).memory_info().rss
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    landed = [pb.PushMinuteSnapshotsResponse.FromString(a).ack for a in acks]
    assert [a.accepted for a in landed[:-1]] == [3] * WORST_CASE_BATCHES
    assert landed[-1].rejected == 1 and f"lists more than {cap} users" in landed[-1].rejects[0].reason
    request_mb = sum(len(r) for r in requests) / 2**20
    report_figures(
        "load.worst_case_batches",
        batches=WORST_CASE_BATCHES,
        ids_per_list=cap,
        request_mb=round(request_mb, 1),
        seconds=round(seconds, 1),
        rss_before_mb=round(baseline / 2**20, 1),
        rss_peak_mb=round(peak / 2**20, 1),
        rss_after_mb=round(after / 2**20, 1),
        bound_mb=MAX_WORST_CASE_RSS >> 20,
    )
    assert peak < MAX_WORST_CASE_RSS, f"peak RSS {peak / 2**20:.0f} MiB over the bound"


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")
