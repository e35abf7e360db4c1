"""What the status page shows, gathered from SQS and the consumers' Prometheus metrics.

Read-only: GetQueueAttributes on every queue, a peek at each DLQ (ReceiveMessage with
VisibilityTimeout=0, so the messages stay where they were) and a GET of each consumer's
/metrics. Every source has a short timeout and fails alone: what cannot be read is shown as
unknown with the reason (say, the permission to attach), never as an error of the page. One
gathering serves every viewer of a worker process for CACHE_SECONDS, so ten open pages do not
make ten times the AWS calls.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.parser import text_string_to_metric_families

from datasync.contract import DESTINATIONS
from datasync.core.aws import client
from datasync.core.queues import error_code, queue_depth, string_attributes
from datasync.settings import Settings, queue_setting_name

SOURCE_TIMEOUT_SECONDS = 1.0
CACHE_SECONDS = 1.0
# Throughput and lag are measured over this window (the difference between two scrapes).
WINDOW_SECONDS = 30.0
MAX_FAILURES = 10  # one ReceiveMessage: the most SQS hands out at once
MAX_ATTRIBUTE_CHARS = 300
# Message attributes shown for a dead letter. Never the body: it carries personal data.
FAILURE_ATTRIBUTES = ("failed_at", "failure_stage", "failure_reason", "event_id", "correlation_id")
QUEUES_SHOWN = ("buffer_queue", "queue", "dlq")
INTAKE_SETTINGS = {"queue": "DATASYNC_INTAKE_QUEUE_URL", "dlq": "DATASYNC_INTAKE_DLQ_URL"}
DENIED = {"AccessDenied", "AccessDeniedException"}
PERMISSION_HINT = "attach the Terraform output dashboard_policy_arn to the API's role"

RECORDS = "datasync_consumer_records_total"
LAG_BUCKET = "datasync_consumer_lag_seconds_bucket"


class SourceUnavailable(Exception):
    """A source could not be read; the message says why, without payloads."""


@dataclass(frozen=True)
class Scrape:
    """One reading of a consumer's metrics."""

    at: float
    outcomes: dict[str, float]
    lag_buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), sorted


def fetch_metrics(url: str) -> str:
    """The text exposition at ``url`` (the URL comes from the settings, not from a request)."""
    try:
        with urllib.request.urlopen(url, timeout=SOURCE_TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.read(1_000_000).decode()
    except (OSError, ValueError) as exc:
        raise SourceUnavailable(f"unreachable ({type(exc).__name__})") from None


def parse_scrape(text: str, destination: str, at: float) -> Scrape:
    outcomes: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("destination") != destination:
                    continue
                if sample.name == RECORDS:
                    outcomes[sample.labels["outcome"]] = sample.value
                elif sample.name == LAG_BUCKET:
                    buckets.append((float(sample.labels["le"]), sample.value))
    except (ValueError, KeyError, IndexError):
        raise SourceUnavailable("not Prometheus text") from None
    return Scrape(at, outcomes, tuple(sorted(buckets)))


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Like PromQL's histogram_quantile: linear within the bucket the rank falls in."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: that bound is all we know
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def window_figures(old: Scrape, new: Scrape) -> dict[str, Any]:
    """Records applied per second and lag quantiles between two scrapes of one consumer."""
    applied = new.outcomes.get("applied", 0.0) - old.outcomes.get("applied", 0.0)
    if applied < 0 or new.at <= old.at:  # the consumer restarted: its counters began again
        return {"applied_per_second": None, "lag_p50_seconds": None, "lag_p95_seconds": None}
    before = dict(old.lag_buckets)
    recent = tuple((upper, count - before.get(upper, 0.0)) for upper, count in new.lag_buckets)
    return {
        "applied_per_second": round(applied / (new.at - old.at), 2),
        "lag_p50_seconds": _rounded(histogram_quantile(0.5, recent)),
        "lag_p95_seconds": _rounded(histogram_quantile(0.95, recent)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def describe_aws_error(exc: BotoCoreError | ClientError) -> str:
    code = error_code(exc)
    if code in DENIED:
        return f"not permitted ({code}): {PERMISSION_HINT}"
    return f"AWS error ({code})"


class StatusCollector:
    """Gathers the status of every destination; cached, so viewers share the AWS calls."""

    def __init__(
        self,
        sqs: Callable[[], Any],
        queue_urls: dict[str, dict[str, str | None]],
        metrics_urls: dict[str, str],
        fetch: Callable[[str], str] = fetch_metrics,
        clock: Callable[[], float] = time.monotonic,
        intake_urls: dict[str, str | None] | None = None,
    ):
        self._sqs_factory = sqs  # built on first use: create_app stays cheap
        self._sqs: Any = None
        self._queue_urls = queue_urls
        # {"queue": ..., "dlq": ...} of the intake, which every live event passes first
        self._intake_urls = intake_urls
        self._metrics_urls = metrics_urls
        self._fetch = fetch
        self._clock = clock
        self._scrapes: dict[str, deque[Scrape]] = {d: deque() for d in queue_urls}
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StatusCollector:
        def sqs() -> Any:
            return client(
                "sqs",
                region=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url,
                connect_timeout=SOURCE_TIMEOUT_SECONDS / 2,
                read_timeout=SOURCE_TIMEOUT_SECONDS,
                attempts=1,
            )

        queue_urls = {
            d: {kind: settings.destination_queue_url(d, kind) for kind in QUEUES_SHOWN}
            for d in DESTINATIONS
        }
        intake = {"queue": settings.intake_queue_url, "dlq": settings.intake_dlq_url}
        return cls(
            sqs,
            queue_urls,
            dict(settings.consumer_metrics_urls),
            intake_urls=intake if settings.intake_queue_url else None,
        )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:  # the others wait for this gathering and share it
            if self._cached is None or self._clock() - self._cached_at >= CACHE_SECONDS:
                self._cached = self._gather()
                self._cached_at = self._clock()
            return self._cached

    def _gather(self) -> dict[str, Any]:
        if self._sqs is None:  # built here, once, not by the threads below at the same time
            self._sqs = self._sqs_factory()
        with ThreadPoolExecutor(max_workers=4 * len(self._queue_urls)) as pool:
            futures = {
                d: {
                    "queues": {k: pool.submit(self._depth, d, k) for k in QUEUES_SHOWN},
                    "consumer": pool.submit(self._consumer, d),
                    "failures": pool.submit(self._failures, d),
                }
                for d in self._queue_urls
            }
            destinations = [
                {
                    "name": d,
                    "queues": {k: f.result() for k, f in parts["queues"].items()},
                    "consumer": parts["consumer"].result(),
                    "failures": parts["failures"].result(),
                }
                for d, parts in futures.items()
            ]
            intake = {
                kind: pool.submit(self._depth_at, url, INTAKE_SETTINGS[kind])
                for kind, url in (self._intake_urls or {}).items()
            }
            intake_queues = {kind: future.result() for kind, future in intake.items()}
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "window_seconds": WINDOW_SECONDS,
            "intake": {"queues": intake_queues} if intake_queues else None,
            "destinations": destinations,
        }

    def _queue_url(self, destination: str, kind: str) -> str:
        url = self._queue_urls[destination].get(kind)
        if not url:
            raise SourceUnavailable(f"not configured: set {queue_setting_name(destination, kind)}")
        return url

    def _depth(self, destination: str, kind: str) -> dict[str, Any]:
        return self._depth_at(
            self._queue_urls[destination].get(kind), queue_setting_name(destination, kind)
        )

    def _depth_at(self, url: str | None, setting: str) -> dict[str, Any]:
        try:
            if not url:
                raise SourceUnavailable(f"not configured: set {setting}")
            depth = queue_depth(self._sqs, url)
        except SourceUnavailable as exc:
            return {"visible": None, "in_flight": None, "error": str(exc)}
        except (BotoCoreError, ClientError) as exc:
            return {"visible": None, "in_flight": None, "error": describe_aws_error(exc)}
        return {**depth, "error": None}

    def _failures(self, destination: str) -> dict[str, Any]:
        """A peek at the DLQ: reasons and ids of up to MAX_FAILURES dead letters, newest first."""
        try:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url(destination, "dlq"),
                MaxNumberOfMessages=MAX_FAILURES,
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        except SourceUnavailable as exc:
            return {"items": [], "error": str(exc)}
        except (BotoCoreError, ClientError) as exc:
            return {"items": [], "error": describe_aws_error(exc)}
        items = []
        for message in messages:
            attributes = string_attributes(message)
            items.append(
                {
                    name: attributes.get(name, "")[:MAX_ATTRIBUTE_CHARS]
                    for name in FAILURE_ATTRIBUTES
                }
            )
        items.sort(key=lambda item: item["failed_at"], reverse=True)
        return {"items": items, "error": None}

    def _consumer(self, destination: str) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "applied_total": None,
            "outcomes": {},
            "applied_per_second": None,
            "lag_p50_seconds": None,
            "lag_p95_seconds": None,
            "error": None,
        }
        url = self._metrics_urls.get(destination)
        if not url:
            figures["error"] = "not configured: set DATASYNC_CONSUMER_METRICS_URLS"
            return figures
        try:
            scrape = parse_scrape(self._fetch(url), destination, self._clock())
        except SourceUnavailable as exc:
            figures["error"] = f"metrics {exc}"
            return figures
        history = self._scrapes[destination]
        history.append(scrape)
        while len(history) > 2 and scrape.at - history[1].at >= WINDOW_SECONDS:
            history.popleft()  # keep the newest scrape that is at least a window old
        figures["applied_total"] = int(scrape.outcomes.get("applied", 0))
        figures["outcomes"] = {k: int(v) for k, v in sorted(scrape.outcomes.items())}
        if len(history) > 1:
            figures.update(window_figures(history[0], scrape))
        return figures
