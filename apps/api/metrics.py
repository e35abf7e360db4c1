"""The API's Prometheus metrics (names, labels and buckets: docs/observability.md).

The metrics live in prometheus-client's default registry. Under gunicorn,
``PROMETHEUS_MULTIPROC_DIR`` is set by ``apps/api/gunicorn_conf.py`` before a worker imports
this module, so each worker writes its samples to files there, and the master serves every
worker's samples summed on the metrics port (``serve_multiprocess_metrics``). Without gunicorn
(tests, ``create_app`` alone) the samples stay in this process's default registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from datasync.core.bus import PublishObserver, PublishOutcome

# The API answers in milliseconds (p99 budget 50 ms); a publish waits at most its 2 s budget.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_ENTRY_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # PutEvents takes at most 10 entries
UNMATCHED_ROUTE = "unmatched"  # 404/405: the URL is the client's, never a label
# Any token is a method to HTTP: others are counted as "other", so a client cannot add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "datasync_api_requests",
    "Requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "datasync_api_request_duration_seconds",
    "Time to answer a request.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMITED = Counter("datasync_api_rate_limited", "Requests answered 429.")
PUBLISHES = Counter(
    "datasync_api_publish", "Events handed to the bus, by what happened.", ["outcome"]
)
PUBLISH_DURATION = Histogram(
    "datasync_api_publish_duration_seconds", "One PutEvents call.", buckets=LATENCY_BUCKETS
)
PUBLISH_BATCH_ENTRIES = Histogram(
    "datasync_api_publish_batch_entries",
    "Entries per PutEvents call (micro-batching).",
    buckets=BATCH_ENTRY_BUCKETS,
)
# livemax: the highest value among live workers; a worker that died takes its value with it.
CIRCUIT_OPEN = Gauge(
    "datasync_api_circuit_open",
    "1 while a worker's circuit breaker is open (max over workers).",
    multiprocess_mode="livemax",
)
PUBLISH_OUTCOMES: tuple[PublishOutcome, ...] = (
    "accepted",
    "refused",
    "unavailable",
    "circuit_open",
)
_PUBLISHED = {outcome: PUBLISHES.labels(outcome) for outcome in PUBLISH_OUTCOMES}


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is the URL rule's template (None: no route matched)."""
    route = route or UNMATCHED_ROUTE
    method = method if method in METHODS else "other"
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_DURATION.labels(route, method).observe(seconds)
    if status == 429:
        RATE_LIMITED.inc()


class PrometheusPublishObserver(PublishObserver):
    """The publisher's events as metrics."""

    def put_events_call(self, entries: int, seconds: float) -> None:
        PUBLISH_DURATION.observe(seconds)
        PUBLISH_BATCH_ENTRIES.observe(entries)

    def published(self, outcome: PublishOutcome) -> None:
        _PUBLISHED[outcome].inc()

    def circuit_changed(self, is_open: bool) -> None:
        CIRCUIT_OPEN.set(1 if is_open else 0)
