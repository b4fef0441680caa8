"""Concurrent senders for the fault and load suites, and the check that every record is in the warehouse once.

Each :class:`Sender` is a thread with its own :class:`IngestClient` and spool, pushing batches of message
samples with ids unique to it until told to stop. It keeps what happened to every batch: acknowledged at once
(with the ack latency), or spooled because the receiver or its database was down. :meth:`Sender.drain`
delivers the spool afterwards. :func:`check_exactly_once` then compares the warehouse with what was sent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from collectors.senders.client import IngestClient
from tests.support import records
from tests.support.receivers import TOKEN


class Sender(threading.Thread):
    def __init__(
        self,
        name: str,
        target: str,
        spool_dir: Path,
        stop: threading.Event,
        *,
        batch: int = 200,
        attempts: int = 3,
        timeout: float = 10.0,
        pause: float = 0.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.client = IngestClient(target, TOKEN, spool_dir=spool_dir, attempts=attempts, backoff=0.05, timeout=timeout)
        self.stop = stop
        self.batch = batch
        self.pause = pause
        self.sent: list[str] = []  # every message id handed to push()
        self.acked = 0  # records acknowledged (accepted + duplicates), at once or when the spool drained
        self.duplicate_acks = 0  # records the receiver already had: a batch sent again after a lost ack
        self.spooled_batches = 0
        self.latencies: list[float] = []  # seconds from push to ack, batches acknowledged at once
        self.error: BaseException | None = None

    def run(self) -> None:
        number = 0
        try:
            while not self.stop.is_set():
                ids = [f"{self.name}-{number}-{i}" for i in range(self.batch)]
                samples = [
                    records.sample(m, channel=f"chan-{i % 7}", receiver=f"key-{self.name}") for i, m in enumerate(ids)
                ]
                self.sent += ids
                started = time.perf_counter()
                result = self.client.push_message_samples(samples)
                elapsed = time.perf_counter() - started
                assert result.rejected == 0, result.rejects[:3]
                self.acked += result.accepted + result.duplicates
                self.duplicate_acks += result.duplicates
                self.spooled_batches += result.spooled_batches
                if not result.spooled_batches and result.delivered_batches == 1:
                    self.latencies.append(elapsed)
                number += 1
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as error:  # reported by the test, never swallowed
            self.error = error

    def drain(self, deadline: float = 60.0) -> None:
        """Deliver what is spooled (the receiver must be up); raise if it cannot be done in time."""
        end = time.monotonic() + deadline
        while self.client.spool is not None and len(self.client.spool):
            result = self.client.flush_spool()
            self.acked += result.accepted + result.duplicates
            self.duplicate_acks += result.duplicates
            assert result.refused_batches == 0
            if time.monotonic() > end:
                raise TimeoutError(f"{self.name}: {len(self.client.spool)} batches still spooled")
            if not result.delivered_batches:
                time.sleep(0.2)
        self.client.close()


@dataclass
class Tally:
    sent: int
    acknowledged: int
    found: int
    duplicates_in_warehouse: int
    duplicate_acks: int
    spooled_batches: int
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "found": self.found,
            "duplicates": self.duplicates_in_warehouse,
            "duplicate_acks": self.duplicate_acks,
            "spooled_batches": self.spooled_batches,
            "lost": len(self.missing),
        }


def check_exactly_once(url: str, senders: list[Sender]) -> Tally:
    """Every record sent is in raw.message_samples exactly once, and nothing else is (every sender drained)."""
    with psycopg.connect(url) as db:
        rows = db.execute("select message_id from raw.message_samples").fetchall()
        ledger = db.execute("select coalesce(sum(accepted), 0) from quality.ingest_batches").fetchone()[0]
    found = [m for (m,) in rows]
    sent = [m for s in senders for m in s.sent]
    distinct = set(found)
    tally = Tally(
        sent=len(sent),
        acknowledged=sum(s.acked for s in senders),
        found=len(distinct),
        duplicates_in_warehouse=len(found) - len(distinct),
        duplicate_acks=sum(s.duplicate_acks for s in senders),
        spooled_batches=sum(s.spooled_batches for s in senders),
        missing=sorted(set(sent) - distinct)[:10],
        foreign=sorted(distinct - set(sent))[:10],
    )
    assert ledger == len(found), f"the ledger counts {ledger} accepted rows, the table holds {len(found)}"
    return tally


def assert_exactly_once(tally: Tally) -> None:
    assert tally.duplicates_in_warehouse == 0, tally
    assert not tally.missing and not tally.foreign, tally
    assert tally.found == tally.sent == tally.acknowledged, tally


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
