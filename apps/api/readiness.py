"""Readiness: may this instance take traffic? Not while the bus is down or unreachable.

The breaker answers at once; otherwise one bounded probe of the bus (the publisher's client
timeouts, no retries) is made at most every ``cache_seconds``, by one thread at a time: the
others get the last answer instead of queueing behind a probe that hangs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Readiness:
    publisher: Any
    cache_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _reachable: bool = False
    _checked_at: float = float("-inf")
    _probing: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> str | None:
        """None when ready, else why not."""
        if self.publisher.circuit == "open":
            return "event bus failing: circuit breaker open"
        if self.clock() - self._checked_at > self.cache_seconds and self._probing.acquire(
            blocking=False
        ):
            try:
                self._reachable = self.publisher.is_reachable()
                self._checked_at = self.clock()
            finally:
                self._probing.release()
        return None if self._reachable else "event bus not reachable"
