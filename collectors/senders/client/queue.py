"""EventQueue: what an app calls on every event, cheap and bounded, in front of the client and its spool.

``track(event)`` only appends to a bounded in-memory queue. A background thread hands the queue to
:meth:`IngestClient.push_product_events` every ``flush_interval`` seconds, or as soon as ``batch_size`` events
wait, so sampling, batching, retries and the spool happen off the caller's thread. When the queue is full (the
receiver unreachable and no spool, or a burst faster than the pushes) the oldest event is dropped and counted in
``dropped``: the app never blocks and memory stays bounded. What the queue handed to the client is the client's
promise: acknowledged, or spooled (with a spool), or reported in ``failed``. ``close()`` flushes what is left.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.senders.client.exporter import IngestClient, IngestError, PushResult

log = logging.getLogger(__name__)


class EventQueue:
    def __init__(
        self,
        client: IngestClient,
        *,
        max_events: int = 10_000,
        batch_size: int = 100,
        flush_interval: float = 10.0,
    ) -> None:
        if max_events < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("max_events and batch_size must be at least 1, flush_interval above 0")
        self.client = client
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._events: deque[pb.ProductEvent] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.dropped = 0  # oldest events pushed out of a full queue
        self.failed = 0  # events handed to the client that it could neither deliver nor spool
        self.result = PushResult()  # what the pushes returned, summed
        self._thread = threading.Thread(target=self._run, name="event-queue", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._events)

    def track(self, event: pb.ProductEvent) -> None:
        """Queue one event; never blocks on the network."""
        if self._closed.is_set():
            raise RuntimeError("the event queue is closed")
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1  # deque(maxlen) pushes the oldest out
            self._events.append(event)
            due = len(self._events) >= self.batch_size
        if due:
            self._wake.set()

    def flush(self) -> None:
        """Hand everything queued to the client now (on the caller's thread)."""
        while True:
            with self._lock:
                batch = list(self._events)
                self._events.clear()
            if not batch:
                return
            try:
                self.result.merge(self.client.push_product_events(batch))
            except IngestError as error:  # refused for good (a bad token, say): the events cannot be sent
                self.failed += len(batch)
                log.error("event queue: %d events refused: %s", len(batch), error)
            except Exception as error:  # the receiver down and no spool: the client could not keep them
                self.failed += len(batch)
                log.warning("event queue: %d events not delivered: %s", len(batch), error)

    def close(self) -> None:
        """Stop the background flushes, then flush what is left."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if not self._closed.is_set():
                self.flush()
