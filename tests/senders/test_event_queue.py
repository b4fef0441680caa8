"""The bounded event queue in front of the client: it flushes by size and by time to a real receiver, drops the
oldest events when full and says how many, and what it handed over is delivered or spooled."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import psycopg
import pytest

from collectors.dev.ports import free_port
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.client.queue import EventQueue
from tests.support.receivers import TOKEN


def event(number: int) -> pb.ProductEvent:
    message = pb.ProductEvent(event_id=f"q{number}", channel="app", event="open", user_id=f"u{number % 7}")
    message.timestamp.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    return message


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from raw.product_events").fetchone()[0]


def test_the_queue_flushes_by_size_and_by_time_and_close_sends_the_rest(
    receiver: Receiver, warehouse_url: str, tmp_path: Path
) -> None:
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN) as client:
        queue = EventQueue(client, batch_size=100, flush_interval=30)
        started = time.monotonic()
        for number in range(100):  # a full batch: flushed at once, long before the interval
            queue.track(event(number))
        while stored(warehouse_url) < 100:
            assert time.monotonic() - started < 10, "a full batch was not flushed"
            time.sleep(0.05)
        queue.close()
        timed = EventQueue(client, batch_size=1000, flush_interval=0.2)
        for number in range(100, 130):  # fewer than a batch: flushed by the interval
            timed.track(event(number))
        while stored(warehouse_url) < 130:
            assert time.monotonic() - started < 20, "the interval did not flush"
            time.sleep(0.05)
        for number in range(130, 135):
            timed.track(event(number))
        timed.close()  # what is left goes with close
    assert stored(warehouse_url) == 135
    assert queue.result.accepted + timed.result.accepted == 135 and queue.dropped == timed.dropped == 0
    with pytest.raises(RuntimeError, match="closed"):
        timed.track(event(0))


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: with a spool, what is handed over is spooled
    with IngestClient(nowhere, TOKEN, spool_dir=tmp_path / "spool", attempts=1, timeout=1) as client:
        queue = EventQueue(client, max_events=50, batch_size=1000, flush_interval=3600)
        for number in range(80):
            queue.track(event(number))
        assert (len(queue), queue.dropped) == (50, 30)
        queue.close()
    assert queue.failed == 0 and queue.result.spooled_batches >= 1
    assert len(client.spool) == queue.result.spooled_batches  # the 50 kept events wait in the spool
