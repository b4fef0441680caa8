"""The host collector: the pure minute rollup, and real psutil sampling landing through a real receiver."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.host.collector import HostCollector
from collectors.senders.host.exposition import CurrentValues
from collectors.senders.host.rollup import COUNTER_RATE_FIELDS, MinuteRollup, Sample, counter_increase
from tests.support.receivers import TOKEN, free_port

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()


def sample(at: float, cpu: float = 10.0, counters: tuple[int, ...] = (0,) * 8, **changes: object) -> Sample:
    values: dict[str, object] = {
        "time": at,
        "cpu_percent": cpu,
        "cpu_percent_per_core": (cpu - 5, cpu + 5),
        "load_average": (0.5, 0.4, 0.3),
        "memory_total_bytes": 1000,
        "memory_used_bytes": 400,
        "memory_free_bytes": 600,
        "memory_percent": 40.0,
        "counters": counters,
    }
    values.update(changes)
    return Sample(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- rollup (pure)


def test_a_minute_of_samples_becomes_one_record_with_averages_maxima_and_rates() -> None:
    rollup = MinuteRollup("h1")
    emitted = []
    for second in range(60):
        # disk read bytes grow 1000 per second; net packets sent grow 5 per second
        counters = (1000 * second, 0, 0, 0, 0, 0, 0, 5 * second)
        emitted += rollup.add(sample(T0 + second, cpu=float(second), counters=counters, memory_used_bytes=second))
    assert emitted == []
    (record,) = rollup.add(sample(T0 + 60, counters=(60_000, 0, 0, 0, 0, 0, 0, 300)))
    assert record.host_id == "h1"
    assert record.minute.ToDatetime(dt.UTC) == dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert record.samples == 60
    assert record.cpu_percent == pytest.approx(29.5)
    assert record.cpu_percent_max == 59.0
    assert list(record.cpu_percent_per_core) == pytest.approx([24.5, 34.5])
    assert record.memory_used_bytes == 30  # round(29.5) to even
    assert record.memory_total_bytes == 1000
    assert record.memory_percent_max == 40.0
    # 59 intervals inside the minute, 1000 bytes each
    assert record.disk_read_bytes_per_s == pytest.approx(1000.0)
    assert record.net_sent_packets_per_s == pytest.approx(5.0)
    assert record.net_recv_bytes_per_s == 0.0
    # the interval 12:00:59 -> 12:01:00 belongs to the next minute
    (following,) = rollup.flush()
    assert following.samples == 1
    assert following.disk_read_bytes_per_s == pytest.approx(1000.0)
    assert rollup.flush() == []


def test_a_counter_that_goes_down_is_a_reset_and_never_a_negative_rate() -> None:
    assert counter_increase(100, 150) == 50
    assert counter_increase(2**32 - 10, 5) == 0
    rollup = MinuteRollup("h1")
    readings = [1000, 2000, 3000, 10, 1010]  # reset after the third sample
    for second, value in enumerate(readings):
        rollup.add(sample(T0 + second, counters=(value,) * 8))
    (record,) = rollup.flush()
    # increases 1000, 1000, (reset) 0, 1000 over 4 seconds
    for name in COUNTER_RATE_FIELDS:
        assert getattr(record, name) == pytest.approx(750.0)


def test_gaps_and_irregular_intervals_divide_by_the_real_elapsed_time() -> None:
    rollup = MinuteRollup("h1")
    rollup.add(sample(T0, counters=(0,) * 8))
    rollup.add(sample(T0 + 10, counters=(100,) * 8))  # a 10 s gap (e.g. a slow push)
    rollup.add(sample(T0 + 10, counters=(200,) * 8))  # same timestamp: no interval, nothing counted
    rollup.add(sample(T0 + 15, counters=(250,) * 8))
    (record,) = rollup.flush()
    assert record.disk_write_ops_per_s == pytest.approx(150 / 15)
    assert record.samples == 4


def test_short_periods_align_on_their_length_and_records_carry_their_start() -> None:
    rollup = MinuteRollup("h1", period_seconds=2)
    records = []
    for tenth in range(0, 61):
        records += rollup.add(sample(T0 + tenth / 10))
    assert [r.minute.ToDatetime(dt.UTC).second for r in records] == [0, 2, 4]
    assert [r.samples for r in records] == [20, 20, 20]
    with pytest.raises(ValueError, match="positive"):
        MinuteRollup("h1", period_seconds=0)


def test_a_core_count_change_keeps_the_cores_every_sample_has() -> None:
    rollup = MinuteRollup("h1")
    rollup.add(sample(T0, cpu_percent_per_core=(10.0, 20.0, 30.0)))
    rollup.add(sample(T0 + 1, cpu_percent_per_core=(30.0, 40.0)))
    (record,) = rollup.flush()
    assert list(record.cpu_percent_per_core) == [20.0, 30.0]


# ---------------------------------------------------------------------------- real psutil, real receiver


def test_collector_process_lands_plausible_minute_records(
    receiver: Receiver, db: psycopg.Connection, tmp_path: Path
) -> None:
    env = {**os.environ, "TELEMETRY_TOKEN": TOKEN}
    env.pop("TELEMETRY_INGEST_TOKENS", None)
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "collectors.senders.host",
            "--target",
            f"127.0.0.1:{receiver.port}",
            "--host-id",
            "test-host",
            "--interval",
            "0.25",
            "--period-seconds",
            "1",
            "--minutes",
            "3",
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 0, finished.stderr
    assert "3 records" in finished.stderr
    # periods shorter than a minute collapse on (host_id, minute): all delivered, at least one landed
    delivered = db.execute("select sum(accepted) + sum(duplicates) from quality.ingest_batches").fetchone()[0]
    assert delivered == 3
    rows = db.execute(
        "select minute, samples, cpu_percent, cpu_percent_max, cpu_percent_per_core, load_average_1m,"
        " memory_total_bytes, memory_used_bytes, memory_free_bytes, memory_percent, disk_read_bytes_per_s,"
        " net_recv_bytes_per_s from raw.host_minutes where host_id = 'test-host'"
    ).fetchall()
    assert 1 <= len(rows) <= 2
    now = dt.datetime.now(dt.UTC)
    memory = psutil.virtual_memory()
    for minute, samples, cpu, cpu_max, per_core, load, total, used, free, percent, disk, net in rows:
        assert now - dt.timedelta(minutes=2) < minute <= now
        assert minute.second == 0
        assert 1 <= samples <= 5
        assert 0 <= cpu <= cpu_max <= 100
        assert len(per_core) == psutil.cpu_count()
        assert load >= 0
        assert total == memory.total
        assert 0 < used < total and 0 < free <= total
        assert 0 < percent < 100
        assert disk >= 0 and net >= 0
    assert db.execute("select count(*) from raw.rejects").fetchone()[0] == 0


def test_records_wait_in_the_spool_while_the_receiver_is_down(
    receiver: Receiver, db: psycopg.Connection, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    with IngestClient(f"127.0.0.1:{free_port()}", TOKEN, spool_dir=spool, attempts=1, timeout=2) as down:
        current = CurrentValues(spool=down.spool)
        port = current.serve(0)
        collector = HostCollector(
            MinuteRollup("spooled-host", period_seconds=60),
            down.push_host_minutes,
            interval=0.2,
            current=current,
        )
        stats = collector.run(duration=0.7)
    assert stats.samples >= 2
    assert 1 <= stats.records <= 2  # 2 when the run crossed a minute boundary
    assert stats.push.spooled_batches == stats.records and stats.push.accepted == 0
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    current.close()
    assert "host_cpu_usage_ratio" in page and "host_memory_total_bytes" in page
    # the spool's depth, as the operator sees it while the receiver is down
    assert f"telemetry_client_spool_batches {float(stats.records)}" in page
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=spool) as up:
        assert up.flush_spool().accepted == stats.records
    stored = db.execute("select sum(samples) from raw.host_minutes where host_id = 'spooled-host'").fetchone()[0]
    assert stored == stats.samples
