import threading

import pytest

from apps.consumers.health import prometheus_text, start_health_server
from apps.consumers.worker import ConsumerWorker, Metrics, RedriveTarget
from datasync.core.stores import open_store
from tests.builders import record
from tests.unit.conftest import drain


@pytest.fixture
def store(tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    yield store
    store.close()


@pytest.fixture
def worker(sqs, queues, store):
    return ConsumerWorker(
        sqs=sqs,
        queue_url=queues["queue"],
        store=store,
        redrive=RedriveTarget.of_queue(sqs, queues["queue"]),
        metrics=Metrics(),
        wait_seconds=0,
    )


def send(sqs, url, *bodies):
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def visible_and_in_flight(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def test_reads_the_redrive_policy_of_its_queue(worker, queues):
    assert worker.redrive == RedriveTarget(queues["dlq"], 3)


def test_applies_a_batch_and_deletes_it(worker, sqs, queues, store):
    send(
        sqs,
        queues["queue"],
        record(key="u1", at=1, name="Ada").model_dump_json(),
        record(key="u2", at=1, name="Bob").model_dump_json(),
    )
    assert worker.poll_once() == 2
    assert store.get("u1")["name"] == "Ada" and store.get("u2")["name"] == "Bob"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    assert worker.metrics.snapshot() == {"applied": 2}


def test_a_redelivered_message_changes_nothing(worker, sqs, queues, store):
    body = record(key="u1", at=1, name="Ada").model_dump_json()
    send(sqs, queues["queue"], body, body)
    worker.poll_once()
    assert worker.metrics.snapshot() == {"applied": 1, "duplicate": 1}
    assert store.applied_count() == 1


def test_a_record_that_fails_is_kept_and_backs_off_while_the_rest_is_deleted(
    worker, sqs, queues, store
):
    good = record(key="u1", at=1, name="Ada").model_dump_json()
    wrong_store = record("marketing", key="u2", at=1, email="b@example.com").model_dump_json()
    send(sqs, queues["queue"], good, wrong_store)
    worker.poll_once()
    assert store.get("u1") and store.get("u2") is None
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)  # the failure waits its backoff
    assert worker.metrics.snapshot() == {"applied": 1, "failed": 1}


def test_on_its_last_delivery_a_failing_message_is_dead_lettered_with_the_reason(
    worker, sqs, queues
):
    worker.backoff = lambda receive_count: 0  # retry at once instead of after 2, 4, ... s
    send(sqs, queues["queue"], record("marketing", key="u2", at=1).model_dump_json())
    for _ in range(2):
        assert worker.poll_once() == 1
        assert drain(sqs, queues["dlq"]) == []
    assert worker.poll_once() == 1  # third delivery = maxReceiveCount
    [dead] = drain(sqs, queues["dlq"])
    assert (
        "cannot go to the crm store" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    )
    assert dead["MessageAttributes"]["failure_stage"]["StringValue"] == "consume"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


def test_a_message_that_is_not_a_record_goes_to_the_dlq_at_once(worker, sqs, queues):
    send(sqs, queues["queue"], "{not json", '{"destination": "crm"}')
    worker.poll_once()
    dead = drain(sqs, queues["dlq"])
    assert len(dead) == 2
    assert all(
        "not a destination record" in m["MessageAttributes"]["failure_reason"]["StringValue"]
        for m in dead
    )
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


class BrokenStore:
    def apply(self, records):
        list(records)
        raise ConnectionError("database down")


def test_when_the_store_is_down_nothing_is_deleted(sqs, queues):
    worker = ConsumerWorker(
        sqs,
        queues["queue"],
        BrokenStore(),
        RedriveTarget(queues["dlq"], 3),
        Metrics(),
        wait_seconds=0,
    )
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada").model_dump_json())
    worker.poll_once()
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)
    assert drain(sqs, queues["dlq"]) == []


def test_run_stops_between_batches(worker, sqs, queues):
    stop = threading.Event()
    stop.set()
    worker.run(stop)  # returns at once: nothing received, nothing lost
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada").model_dump_json())
    assert visible_and_in_flight(sqs, queues["queue"]) == (1, 0)


def test_health_and_metrics_endpoints():
    import urllib.request

    metrics = Metrics()
    metrics.add("applied", 3)
    assert 'outcome="applied"} 3' in prometheus_text("crm", metrics)
    server = start_health_server("127.0.0.1", 0, "crm", metrics)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            assert b"datasync_consumer_records_total" in r.read()
        metrics.last_poll -= 3600
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert info.value.code == 503
    finally:
        server.shutdown()


def test_a_batch_logs_one_line_that_traces_every_record(worker, sqs, queues, caplog):
    first, second = record(key="u1", at=1, name="Ada"), record(key="u2", at=1, name="Bob")
    send(sqs, queues["queue"], first.model_dump_json(), second.model_dump_json())
    send(sqs, queues["queue"], first.model_dump_json())  # a duplicate
    with caplog.at_level("INFO", logger="datasync.consumer"):
        while worker.poll_once():
            pass
    lines = [r for r in caplog.records if r.name == "datasync.consumer"]
    assert {r.getMessage() for r in lines} == {"batch applied"}
    by_outcome: dict[str, list[str]] = {}
    for line in lines:
        for outcome, events in line.events.items():
            by_outcome.setdefault(outcome, []).extend(events)
    trace = [f"{r.event_id}/{r.correlation_id}" for r in (first, second)]
    assert sorted(by_outcome["applied"]) == sorted(trace)
    assert by_outcome["duplicate"] == trace[:1]
    assert "Ada" not in caplog.text and "Bob" not in caplog.text, "no personal data in logs"
