"""The receiver killed with SIGKILL while HTTP senders post: no record it acknowledged is lost, and what the senders
post again after the restart lands once (the natural key makes a resent batch duplicates, not new rows)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import time

import httpx
import psycopg
import pytest

from collectors.dev.ports import free_port
from tests.support.receivers import TOKEN, report_figures

pytestmark = pytest.mark.fault

SENDERS = 4
BATCH = 200
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Sender(threading.Thread):
    """Posts batches of unique events; a batch is done once answered 200, and sent again until then (as a sender
    whose request failed must)."""

    def __init__(self, number: int, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.number, self.url, self.stop = number, url, stop
        self.acknowledged: set[str] = set()
        self.failures = 0
        self.resent_duplicates = 0

    def run(self) -> None:
        at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
        batch = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                ids = [f"s{self.number}-b{batch}-{i}" for i in range(BATCH)]
                body = json.dumps(
                    [
                        {
                            "schema_version": "telemetry_event_v1",
                            "event_id": event_id,
                            "channel": "app",
                            "event": "open",
                            "timestamp": at,
                            "user_id": "u",
                        }
                        for event_id in ids
                    ]
                )
                while True:
                    try:
                        response = client.post(self.url, content=body, headers=HEADERS)
                    except httpx.HTTPError:
                        response = None
                    if response is not None and response.status_code == 200:
                        ack = response.json()
                        assert ack["accepted"] + ack["duplicates"] == BATCH, ack
                        self.resent_duplicates += ack["duplicates"]
                        self.acknowledged.update(ids)
                        break
                    self.failures += 1
                    if self.stop.is_set():
                        return
                    time.sleep(0.2)
                batch += 1


def wait_acknowledged(senders: list[Sender], count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(s.acknowledged) for s in senders) < count:
        assert time.monotonic() < deadline, "the senders stopped getting answers"
        time.sleep(0.05)


def test_receiver_sigkill_under_http_load_loses_no_acknowledged_record(receiver_process, warehouse_url: str) -> None:
    port, http_port = free_port(), free_port()
    env = {"TELEMETRY_HTTP_LISTEN": f"127.0.0.1:{http_port}"}
    process, _ = receiver_process(port=port, **env)
    stop = threading.Event()
    started = time.perf_counter()
    senders = [Sender(n, f"http://127.0.0.1:{http_port}/api/v1/events", stop) for n in range(SENDERS)]
    for sender in senders:
        sender.start()
    wait_acknowledged(senders, 20 * BATCH)
    process.send_signal(signal.SIGKILL)  # mid-load: bodies in flight, some committed but not answered
    process.wait(10)
    killed_at = sum(len(s.acknowledged) for s in senders)
    time.sleep(1.0)
    receiver_process(port=port, **env)
    wait_acknowledged(senders, killed_at + 20 * BATCH)
    stop.set()
    for sender in senders:
        sender.join(30)
    acknowledged = set().union(*(s.acknowledged for s in senders))
    with psycopg.connect(warehouse_url) as conn:
        stored = [row[0] for row in conn.execute("select event_id from raw.product_events")]
    missing = acknowledged - set(stored)
    report_figures(
        "fault.http_receiver_sigkill",
        senders=SENDERS,
        seconds=round(time.perf_counter() - started, 1),
        acknowledged=len(acknowledged),
        stored=len(stored),
        failed_posts=sum(s.failures for s in senders),
        duplicates_after_resend=sum(s.resent_duplicates for s in senders),
        lost=len(missing),
    )
    assert not missing, sorted(missing)[:5]
    assert len(stored) == len(set(stored))  # each event once
    assert sum(s.failures for s in senders) > 0  # the outage was felt
