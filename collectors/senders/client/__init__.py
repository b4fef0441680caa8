"""The exporter every sender uses: batching, retries with backoff, an on-disk spool, and sampling by user."""

from collectors.senders.client.exporter import IngestClient, IngestError, PushResult
from collectors.senders.client.queue import EventQueue
from collectors.senders.client.sampling import Sampling
from collectors.senders.client.spool import Spool, SpoolFullError, SpoolWriteError

__all__ = [
    "EventQueue",
    "IngestClient",
    "IngestError",
    "PushResult",
    "Sampling",
    "Spool",
    "SpoolFullError",
    "SpoolWriteError",
]
