"""Rate limits in this worker process: requests per API key, failed authentications per client.

``RateLimiter``: a token bucket per API key.
Each key may spend ``burst`` requests at once and then ``rate`` per second. The buckets live
in the process (the API keeps no shared state), so the limit a key meets in one pod is
``rate x gunicorn workers``: it stops one runaway client from taking a pod's capacity; it is
not a billing quota. Only authenticated keys get a bucket, so memory is bounded by the
number of configured keys.

``FailedAuthentications``: a token bucket per client address, taken from only by a request
whose key was refused. Once an address has spent its failures, it gets 429 before its key is
even looked at, so guessing keys runs at ``per_minute`` guesses a minute per worker process.
The address must be the client's: behind a proxy, set DATASYNC_API_TRUSTED_PROXIES, or every
client of that proxy shares one allowance. Memory is bounded (``max_addresses``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float

    def refill(self, now: float, per_second: float, capacity: float) -> _Bucket:
        """Add what ``per_second`` gave back since the last refill, up to ``capacity``."""
        self.tokens = min(capacity, self.tokens + (now - self.updated) * per_second)
        self.updated = now
        return self


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
            bucket.refill(now, self.rate, self.burst)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate


@dataclass
class FailedAuthentications:
    per_minute: int  # failures an address may have in a burst, regained at this rate; 0 = off
    max_addresses: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, address: str) -> float:
        """0.0 if ``address`` may try a key now, else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            bucket = self._refilled(address)
            if bucket is None or bucket.tokens >= 1:
                return 0.0
            return (1 - bucket.tokens) * 60 / self.per_minute

    def record_failure(self, address: str) -> None:
        if self.per_minute <= 0:
            return
        with self._lock:
            bucket = self._refilled(address) or _Bucket(float(self.per_minute), self.clock())
            bucket.tokens = max(0.0, bucket.tokens - 1)
            self._buckets[address] = bucket
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)  # the address that failed longest ago

    def _refilled(self, address: str) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        return bucket.refill(self.clock(), self.per_minute / 60, self.per_minute)
