"""The exporter every sender uses: batching, retries with backoff, and an on-disk spool."""

from collectors.senders.client.exporter import IngestClient, IngestError, PushResult
from collectors.senders.client.spool import Spool, SpoolFullError, SpoolWriteError

__all__ = ["IngestClient", "IngestError", "PushResult", "Spool", "SpoolFullError", "SpoolWriteError"]
