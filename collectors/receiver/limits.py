"""Per-token rate limits, shared by both transports: a token bucket of ``rate`` requests per second and ``burst``."""

from __future__ import annotations

import hashlib
import threading
import time


class RateLimiter:
    """``acquire(token)`` takes one request from the token's bucket: None when allowed, else the seconds to wait.

    Buckets are keyed by a hash of the token (the tokens themselves are not kept here); ``rate`` 0 is no limit.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._lock = threading.Lock()

    def acquire(self, token: str) -> float | None:
        if self.rate <= 0:
            return None
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        with self._lock:
            left, counted = self._buckets.get(key, (self.burst, now))
            left = min(self.burst, left + (now - counted) * self.rate)
            if left < 1:
                self._buckets[key] = (left, now)
                return (1 - left) / self.rate
            self._buckets[key] = (left - 1, now)
        return None
