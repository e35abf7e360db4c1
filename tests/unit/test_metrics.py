"""Prometheus metrics of the API and the consumers, read back from their text exposition.

Every check scrapes what Prometheus would scrape and parses it with prometheus-client's own
parser; counts are compared before and after, so that a metric that stops being counted fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from apps.api import metrics as api_metrics
from apps.api.app import create_app
from apps.api.correlation import correlation_id_of, trace_id_of
from apps.consumers.metrics import LAG_BUCKETS, RECORD_OUTCOMES, ConsumerMetrics
from apps.consumers.worker import ConsumerWorker, RedriveTarget
from datasync.contract import DestinationRecord
from datasync.contract.events import format_time, now_utc
from datasync.core.bus import CircuitBreaker, EventPublisher
from datasync.core.stores import open_store
from datasync.settings import Settings
from tests.builders import record
from tests.pipeline import free_port, wait_until
from tests.unit.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "observability.md"
USER = {"email": "ada@example.com", "name": "Ada"}


def scrape(text: str | bytes) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from a text exposition."""
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- API -----------------------------------------------------------------------------------
def test_requests_are_counted_by_route_template_method_and_status(client, auth):
    before = scrape(generate_latest(REGISTRY))
    user_id = "0b9c6f1e-8d2a-4c1b-9f3e-5a6d7c8b9e0f"
    assert client.post("/v1/users", json=USER, headers=auth).status_code == 202
    assert client.post("/v1/users", json=USER, headers=auth).status_code == 202
    assert client.patch(f"/v1/users/{user_id}", json={"name": "B"}, headers=auth).status_code == 202
    assert client.get(f"/no/such/{user_id}").status_code == 404
    assert client.post("/v1/users", json={"email": "x"}, headers=auth).status_code == 422
    after = scrape(generate_latest(REGISTRY))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "datasync_api_requests_total"
    assert delta(requests, route="/v1/users", method="POST", status="202") == 2
    assert delta(requests, route="/v1/users", method="POST", status="422") == 1
    assert delta(requests, route="/v1/users/<user_id>", method="PATCH", status="202") == 1
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    # The URL (and so the id in it) is never a label value.
    assert not any(user_id in str(labels) for _, labels in after)
    durations = "datasync_api_request_duration_seconds_count"
    assert delta(durations, route="/v1/users", method="POST") == 3


def test_an_unknown_method_does_not_make_a_series_of_its_own(client):
    before = scrape(generate_latest(REGISTRY))
    status = client.open("/v1/users", method="BREW").status_code
    after = scrape(generate_latest(REGISTRY))
    labels = {"route": "unmatched", "method": "other", "status": str(status)}
    requests = "datasync_api_requests_total"
    assert value(after, requests, **labels) - value(before, requests, **labels) == 1
    assert not any(("method", "BREW") in labels for _, labels in after)


def test_answers_429_are_counted_as_rate_limited(publisher, auth):
    settings = Settings(
        DATASYNC_ENV="aws",
        DATASYNC_API_KEYS=API_KEY,
        DATASYNC_API_RATE_LIMIT="1",
        DATASYNC_API_RATE_LIMIT_BURST="1",
    )
    client = create_app(settings, publisher=publisher).test_client()
    before = scrape(generate_latest(REGISTRY))
    statuses = [client.post("/v1/users", json=USER, headers=auth).status_code for _ in range(3)]
    after = scrape(generate_latest(REGISTRY))
    assert statuses == [202, 429, 429]
    limited = "datasync_api_rate_limited_total"
    assert value(after, limited) - value(before, limited) == 2


class FakeEvents:
    """PutEvents answering from a script: "ok", "refuse" (a definitive ErrorCode), "throttle"."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.calls: list[int] = []

    def put_events(self, Entries):  # noqa: N803 - boto3's naming
        self.calls.append(len(Entries))
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "throttle":
            time.sleep(0.15)  # a slow no: the 0.5 s budget has room for three attempts
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "PutEvents")
        if answer == "refuse":
            return {"Entries": [{"ErrorCode": "ValidationException"} for _ in Entries]}
        return {"Entries": [{"EventId": f"e{i}"} for i, _ in enumerate(Entries)]}

    def describe_event_bus(self, Name):  # noqa: N803
        return {}


def observed_publisher(events: FakeEvents, failures: int = 5) -> EventPublisher:
    observer = api_metrics.PrometheusPublishObserver()
    return EventPublisher(
        events,
        "bus",
        budget_seconds=0.5,
        attempt_timeout=0.1,
        base_delay=0.001,
        max_delay=0.002,
        breaker=CircuitBreaker(failures, cooldown_seconds=60, observer=observer),
        observer=observer,
    )


def an_event(**overrides):
    from datasync.contract import UserCreated, UserCreatedData

    data = UserCreatedData.model_construct(user_id=__import__("uuid").uuid4(), **USER)
    return UserCreated.model_construct(
        data=data,
        event_id=__import__("uuid").uuid4(),
        occurred_at=now_utc(),
        correlation_id="metrics-test",
        **overrides,
    )


def test_publish_outcomes_calls_and_batch_entries_are_counted():
    # Throttled until its budget is spent: unavailable, and the breaker (threshold 1) opens.
    events = FakeEvents("ok", "refuse", *["throttle"] * 20)
    publisher = observed_publisher(events, failures=1)
    before = scrape(generate_latest(REGISTRY))
    publisher.publish_many([an_event(), an_event(), an_event()])  # one call, 3 entries: accepted
    publisher.publish_many([an_event()])  # refused
    publisher.publish_many([an_event()])  # throttled, then the breaker (threshold 1) opens
    publisher.publish_many([an_event(), an_event()])  # the circuit is open: not even sent
    after = scrape(generate_latest(REGISTRY))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("datasync_api_publish_total", outcome="accepted") == 3
    assert delta("datasync_api_publish_total", outcome="refused") == 1
    assert delta("datasync_api_publish_total", outcome="unavailable") == 1
    assert delta("datasync_api_publish_total", outcome="circuit_open") == 2
    calls = len(publisher.events_client.calls)
    assert delta("datasync_api_publish_duration_seconds_count") == calls
    assert delta("datasync_api_publish_batch_entries_count") == calls
    assert delta("datasync_api_publish_batch_entries_sum") == sum(publisher.events_client.calls)
    assert delta("datasync_api_publish_batch_entries_bucket", le="3.0") >= 1  # the call of 3
    assert value(after, "datasync_api_circuit_open") == 1


def test_the_circuit_gauge_falls_back_to_0_when_the_bus_answers_again():
    clock = [0.0]
    events = FakeEvents(*["throttle"] * 20)
    publisher = observed_publisher(events, failures=1)
    publisher.breaker.clock = lambda: clock[0]
    publisher.publish_many([an_event()])
    events.answers = []  # the bus is back
    assert value(scrape(generate_latest(REGISTRY)), "datasync_api_circuit_open") == 1
    clock[0] = 61.0  # the cool-down is over: one probe goes through and succeeds
    publisher.publish_many([an_event()])
    assert value(scrape(generate_latest(REGISTRY)), "datasync_api_circuit_open") == 0


# -- correlation id --------------------------------------------------------------------------
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"X-Correlation-ID": "corr-1", "X-Request-ID": "req-1", "traceparent": TRACEPARENT},
            "corr-1",
        ),
        ({"X-Request-ID": "req-1", "traceparent": TRACEPARENT}, "req-1"),
        ({"X-Correlation-ID": "bad id!", "X-Request-ID": "req-1"}, "req-1"),
        ({"traceparent": TRACEPARENT}, TRACE_ID),
        ({"X-Request-ID": "x" * 129, "traceparent": TRACEPARENT}, TRACE_ID),
    ],
)
def test_the_correlation_id_comes_from_the_first_valid_header(client, headers, expected):
    assert correlation_id_of(headers) == expected
    assert client.get("/healthz", headers=headers).headers["X-Correlation-ID"] == expected


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # lower-case hex only
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
        "",
    ],
)
def test_an_invalid_traceparent_is_passed_over(client, traceparent):
    assert trace_id_of(traceparent) is None
    answered = client.get("/healthz", headers={"traceparent": traceparent})
    assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["X-Correlation-ID"])
    assert answered.headers["X-Correlation-ID"] != TRACE_ID


def test_a_later_traceparent_version_may_carry_more_fields():
    assert trace_id_of(f"01-{TRACE_ID}-00f067aa0ba902b7-01-future") == TRACE_ID


# -- consumers -------------------------------------------------------------------------------
def recent_record(seconds_ago: float, **fields) -> DestinationRecord:
    event_id = __import__("uuid").uuid4()
    at = now_utc() - timedelta(seconds=seconds_ago)
    return record(key=str(event_id), **fields).model_copy(
        update={"event_id": event_id, "version": f"{format_time(at)}#{event_id}"}
    )


def test_a_consumer_counts_records_batches_and_lag(sqs, queues, tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    metrics = ConsumerMetrics("crm")
    worker = ConsumerWorker(
        sqs, queues["queue"], store, RedriveTarget.of_queue(sqs, queues["queue"]), metrics,
        wait_seconds=0, backoff=lambda receive_count: 0,
    )  # fmt: skip
    fresh = recent_record(3, name="Ada")  # lag about 3 s: bucket 5, not 2
    old = record(key="old", at=1, name="Bob")  # occurred in 2026-11: beyond the last bucket
    failing = record(key="bad", at=1, op="append", name="No")  # crm cannot append
    for body in (fresh, fresh, old, failing):  # fresh twice: the second is a duplicate
        sqs.send_message(QueueUrl=queues["queue"], MessageBody=body.model_dump_json())
    sqs.send_message(QueueUrl=queues["queue"], MessageBody="not a record")
    while worker.poll_once():
        pass
    samples = scrape(generate_latest(metrics.registry))
    crm = {"destination": "crm"}
    records = "datasync_consumer_records_total"
    assert value(samples, records, outcome="applied", **crm) == 2
    assert value(samples, records, outcome="duplicate", **crm) == 1
    assert value(samples, records, outcome="unchanged", **crm) == 0
    # The failing record: failed on receives 1 and 2, dead-lettered on the 3rd (maxReceiveCount);
    # the message that is not a record: dead-lettered at once.
    assert value(samples, records, outcome="failed", **crm) == 2
    assert value(samples, records, outcome="dead_lettered", **crm) == 2
    # Lag: the two first applies, not the duplicate.
    assert value(samples, "datasync_consumer_lag_seconds_count", **crm) == 2
    assert value(samples, "datasync_consumer_lag_seconds_bucket", le="2.0", **crm) == 0
    assert value(samples, "datasync_consumer_lag_seconds_bucket", le="5.0", **crm) == 1
    assert value(samples, "datasync_consumer_lag_seconds_bucket", le="900.0", **crm) == 1
    assert value(samples, "datasync_consumer_lag_seconds_bucket", le="+Inf", **crm) == 2
    # Each receive that carried records was one batch applied, and every record was counted.
    batches = value(samples, "datasync_consumer_batch_records_count", **crm)
    assert batches >= 3  # the failing record came back twice on receives of its own
    assert value(samples, "datasync_consumer_batch_records_sum", **crm) == 4 + 2
    assert value(samples, "datasync_consumer_apply_duration_seconds_count", **crm) == batches
    assert 0 <= value(samples, "datasync_consumer_seconds_since_poll", **crm) < 5
    store.close()


def test_seconds_since_poll_grows_until_the_next_receive():
    metrics = ConsumerMetrics("analytics")
    metrics.last_poll -= 120
    samples = scrape(generate_latest(metrics.registry))
    since = value(samples, "datasync_consumer_seconds_since_poll", destination="analytics")
    assert 120 <= since < 125
    metrics.polled()
    samples = scrape(generate_latest(metrics.registry))
    assert value(samples, "datasync_consumer_seconds_since_poll", destination="analytics") < 5


# -- the documentation is the contract ------------------------------------------------------
def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names) from the table; label values (after "=") are left out."""
    rows = re.findall(r"^\| `(datasync_\w+)` \| (\w+) \|([^|]*)\|", DOC.read_text(), re.M)
    assert rows, f"no metric table in {DOC}"
    return {
        name: (kind, frozenset(re.findall(r"`(\w+)`", labels.split(" = ")[0])))
        for name, kind, labels in rows
    }


def documented_values(metric: str) -> tuple[str, ...]:
    row = re.search(rf"^\| `{metric}` \|[^|]*\|[^|]* = ([^|]*)\|", DOC.read_text(), re.M)
    assert row, f"{metric}: no label values in the docs"
    return tuple(re.findall(r"`(\w+)`", row.group(1)))


def registered_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    families = [
        *(f for f in REGISTRY.collect() if f.name.startswith("datasync_api_")),
        *ConsumerMetrics("crm").registry.collect(),
    ]
    found = {}
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {
            label
            for sample in family.samples
            for label in sample.labels
            if label not in ("le", "quantile")
        }
        found[name] = (family.type, frozenset(labels))
    return found


def test_the_metric_table_of_the_docs_is_what_the_code_registers():
    # Labelled metrics show their labels only once a series exists: make one of each.
    api_metrics.observe_request("/healthz", "GET", 200, 0.001)
    assert documented_metrics() == registered_metrics()
    assert documented_values("datasync_api_publish_total") == api_metrics.PUBLISH_OUTCOMES
    assert documented_values("datasync_consumer_records_total") == RECORD_OUTCOMES


def test_the_documented_lag_buckets_are_the_code_s():
    line = re.search(r"^Lag buckets \(seconds\): (.*)\.$", DOC.read_text(), re.M)
    assert line, "no lag buckets line in the docs"
    assert tuple(float(b) for b in line.group(1).split(", ")) == LAG_BUCKETS


# -- multiprocess mode under the real gunicorn ------------------------------------------------
def test_gunicorn_serves_every_workers_samples_summed_on_its_own_port(tmp_path):
    """Two workers; both are killed and replaced midway: the counts of all four are summed."""
    api_port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATASYNC_", "AWS_"))},
        "DATASYNC_ENV": "local",
        "DATASYNC_ENV_FILE": str(tmp_path / "none.env"),
        "API_PORT": str(api_port),
        "DATASYNC_API_METRICS_PORT": str(metrics_port),
        "GUNICORN_WORKERS": "2",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # no bus: /healthz does not need one
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "samples"),
    }
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "counter_1.db").write_bytes(b"stale")  # an earlier run's: wiped
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(  # noqa: S603
        [str(gunicorn), "--config", "python:apps.api.gunicorn_conf", "apps.api.wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    api, scrape_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}/metrics"

    def get(url):
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.read()

    def healthz_count():
        _, body = get(scrape_url)
        labels = {"route": "/healthz", "method": "GET", "status": "200"}
        return value(scrape(body), "datasync_api_requests_total", **labels)

    def workers():
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    try:
        wait_until(lambda: len(workers()) == 2 and get(f"{api}/healthz")[0] == 200, timeout=30)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: get(f"{api}/healthz"), range(30)))
        assert healthz_count() == 31  # the one of the wait above, and these 30
        for pid in workers():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(workers()) == 2 and get(f"{api}/healthz")[0] == 200, timeout=30)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: get(f"{api}/healthz"), range(10)))
        assert healthz_count() == 42
        # The public port does not serve metrics.
        with pytest.raises(urllib.error.HTTPError):
            get(f"{api}/metrics")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
