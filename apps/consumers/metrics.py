"""A consumer's Prometheus metrics (names, labels and buckets: docs/observability.md).

One registry per process: a consumer is one process (threads share it), and a registry of its
own keeps tests and several workers in one test process apart.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RecordOutcome = Literal["applied", "unchanged", "duplicate", "failed", "dead_lettered"]
RECORD_OUTCOMES: tuple[RecordOutcome, ...] = (
    "applied",
    "unchanged",
    "duplicate",
    "failed",
    "dead_lettered",
)
# A receive takes up to 10 messages, each a record pack of up to 100 records.
BATCH_RECORD_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)


class ConsumerMetrics:
    """What one destination's consumer did; thread-safe (prometheus-client locks its values)."""

    def __init__(self, destination: str, registry: CollectorRegistry | None = None):
        self.destination = destination
        self.registry = registry or CollectorRegistry()
        self.last_poll = time.monotonic()
        self.last_progress = self.last_poll  # a receive returned, or a wait for the store turned
        # Why the store cannot take writes now (None: it can). Readiness answers it; a consumer
        # is not ready before its store first answered.
        self.store_problem: str | None = "the store has not answered yet"
        self._store_down_since: float | None = None  # when an outage began
        self._store_lock = threading.Lock()
        records = Counter(
            "datasync_consumer_records",
            "Records handled, by outcome.",
            ["destination", "outcome"],
            registry=self.registry,
        )
        # Every outcome from the start: a rate over a series that appears late misses its start.
        self._records = {
            outcome: records.labels(destination, outcome) for outcome in RECORD_OUTCOMES
        }
        self._batch_records = Histogram(
            "datasync_consumer_batch_records",
            "Records per received batch.",
            ["destination"],
            buckets=BATCH_RECORD_BUCKETS,
            registry=self.registry,
        ).labels(destination)
        self._apply_duration = Histogram(
            "datasync_consumer_apply_duration_seconds",
            "Applying one batch to the store.",
            ["destination"],
            buckets=APPLY_BUCKETS,
            registry=self.registry,
        ).labels(destination)
        self._lag = Histogram(
            "datasync_consumer_lag_seconds",
            "End-to-end lag: applied time minus the event's occurred_at.",
            ["destination"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        ).labels(destination)
        Gauge(
            "datasync_consumer_seconds_since_poll",
            "Seconds since the last receive returned (stuck > 90 s).",
            ["destination"],
            registry=self.registry,
        ).labels(destination).set_function(self.seconds_since_poll)
        Gauge(
            "datasync_consumer_store_unreachable",
            "1 while the store cannot be reached or cannot take writes (nothing is received).",
            ["destination"],
            registry=self.registry,
        ).labels(destination).set_function(lambda: float(self.store_problem is not None))

    def add(self, outcome: RecordOutcome, count: int = 1) -> None:
        self._records[outcome].inc(count)

    def batch_records(self, records: int) -> None:
        self._batch_records.observe(records)

    def applied_in(self, seconds: float) -> None:
        self._apply_duration.observe(seconds)

    def lag(self, occurred_at: datetime | None, applied_at: datetime) -> None:
        if occurred_at is not None:  # a version we cannot read says nothing about lag
            self._lag.observe(max(0.0, (applied_at - occurred_at).total_seconds()))

    def polled(self) -> None:
        self.last_poll = self.last_progress = time.monotonic()

    def seconds_since_poll(self) -> float:
        return time.monotonic() - self.last_poll

    def progressed(self) -> None:
        """The loop turned without a receive (it waits for the store): alive, not stuck."""
        self.last_progress = time.monotonic()

    def seconds_since_progress(self) -> float:
        return time.monotonic() - self.last_progress

    def store_unreachable(self, reason: str) -> bool:
        """The store cannot take writes, for ``reason``; True if it could until now."""
        with self._store_lock:
            began = self._store_down_since is None
            if began:
                self._store_down_since = time.monotonic()
            self.store_problem = f"store unreachable: {reason}"
            return began

    def store_reachable(self) -> float | None:
        """The store takes writes; how long it did not (None if it did already)."""
        with self._store_lock:
            since, self._store_down_since = self._store_down_since, None
            self.store_problem = None
        return None if since is None else time.monotonic() - since

    def seconds_store_unreachable(self) -> float:
        since = self._store_down_since
        return 0.0 if since is None else time.monotonic() - since

    def snapshot(self) -> dict[str, int]:
        """The records counted so far, by outcome (those seen at least once)."""
        counts = {
            outcome: self.registry.get_sample_value(
                "datasync_consumer_records_total",
                {"destination": self.destination, "outcome": outcome},
            )
            or 0
            for outcome in RECORD_OUTCOMES
        }
        return {outcome: int(count) for outcome, count in counts.items() if count}
