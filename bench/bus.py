"""Putting events straight on a bus, in PutEvents of 10: as a burst, or at a fixed rate.

Used for the pipeline bursts, the sustained run and the emulator ceiling (the same code puts
on both buses, so the two are comparable). Every entry's acceptance is checked (a 200 answer
can still refuse entries); refused entries are retried a few times, then counted as failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from datasync.core.retry import backoff_delay

BATCH = 10
RETRIES = 5


@dataclass
class PutResult:
    accepted_at: dict[int, float] = field(default_factory=dict)  # entry index -> epoch seconds
    scheduled_at: dict[int, float] = field(default_factory=dict)  # open loop: when it was due
    failed: list[int] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    calls: int = 0
    lag: list[float] = field(default_factory=list)  # open loop: send time - scheduled time


def batches(count: int, size: int = BATCH) -> list[range]:
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


class BusPutter:
    def __init__(self, events_client: Any, clock: Callable[[], float] = time.time) -> None:
        self.events = events_client
        self.clock = clock
        self._lock = threading.Lock()

    def _put(self, entries: list[dict[str, Any]], indices: range, result: PutResult) -> None:
        pending = list(indices)
        for attempt in range(RETRIES):
            response = self.events.put_events(Entries=[entries[i] for i in pending])
            now = self.clock()
            retry = []
            for index, outcome in zip(pending, response["Entries"], strict=True):
                if outcome.get("EventId") and not outcome.get("ErrorCode"):
                    result.accepted_at[index] = now
                else:
                    retry.append(index)
            with self._lock:
                result.calls += 1
            if not retry:
                return
            pending = retry
            time.sleep(backoff_delay(attempt + 1, base=0.05, cap=1.0))
        with self._lock:
            result.failed.extend(pending)

    def burst(
        self, entries: list[dict[str, Any]], threads: int = 4, result: PutResult | None = None
    ) -> PutResult:
        """Everything as fast as ``threads`` callers can put it (the method of the first figures).

        ``result`` fills in as batches are accepted (the progress line reads it)."""
        result = result or PutResult()
        result.started = self.clock()
        with ThreadPoolExecutor(threads, thread_name_prefix="bench-put") as pool:
            for future in [
                pool.submit(self._put, entries, b, result) for b in batches(len(entries))
            ]:
                future.result()
        result.finished = self.clock()
        return result

    def open_loop(
        self,
        entries: list[dict[str, Any]],
        rate: float,
        threads: int = 8,
        result: PutResult | None = None,
    ) -> PutResult:
        """One batch of 10 every 10/rate seconds, on schedule whatever earlier calls took."""
        result = result or PutResult()
        result.started = self.clock()
        interval = BATCH / rate
        with ThreadPoolExecutor(threads, thread_name_prefix="bench-put") as pool:
            futures = []
            for n, batch in enumerate(batches(len(entries))):
                scheduled = result.started + n * interval
                delay = scheduled - self.clock()
                if delay > 0:
                    time.sleep(delay)
                result.lag.append(max(0.0, self.clock() - scheduled))
                result.scheduled_at.update(dict.fromkeys(batch, scheduled))
                futures.append(pool.submit(self._put, entries, batch, result))
            for future in futures:
                future.result()
        result.finished = self.clock()
        return result
