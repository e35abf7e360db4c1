"""Per-API-key rate limit: a token bucket per key, in this worker process.

Each key may spend ``burst`` requests at once and then ``rate`` per second. The buckets live
in the process (the API keeps no shared state), so the limit a key meets in one pod is
``rate x gunicorn workers``: it stops one runaway client from taking a pod's capacity; it is
not a billing quota. Only authenticated keys get a bucket, so memory is bounded by the
number of configured keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    rate: float  # tokens per second; 0 = unlimited
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key: str, cost: int = 1) -> float:
        """Take ``cost`` tokens for ``key`` (a batch takes one per user, at most the burst):
        0.0 if allowed, else the seconds until they are there (nothing is taken then)."""
        if self.rate <= 0:
            return 0.0
        cost = min(cost, self.burst)
        with self._lock:
            now = self.clock()
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate
