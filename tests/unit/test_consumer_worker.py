import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from apps.consumers.__main__ import main
from apps.consumers.app import database_url
from apps.consumers.health import start_health_server
from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import ConsumerWorker, RedriveTarget
from datasync.contract import DestinationRecord, RecordPack
from datasync.core import exit_codes
from datasync.core.stores import open_store
from datasync.settings import ConfigError, Settings
from tests import crafted
from tests.builders import record
from tests.conftest import FIXTURES
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
        metrics=ConsumerMetrics("crm"),
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


def rejected_by_the_store(key="u2"):
    """A valid crm record the crm store refuses: it merges state and cannot append."""
    return record(key=key, at=1, op="append", name="Bob").model_dump_json()


def test_a_record_that_fails_is_kept_and_backs_off_while_the_rest_is_deleted(
    worker, sqs, queues, store
):
    good = record(key="u1", at=1, name="Ada").model_dump_json()
    send(sqs, queues["queue"], good, rejected_by_the_store())
    worker.poll_once()
    assert store.get("u1") and store.get("u2") is None
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)  # the failure waits its backoff
    assert worker.metrics.snapshot() == {"applied": 1, "failed": 1}


def test_on_its_last_delivery_a_failing_message_is_dead_lettered_with_the_reason(
    worker, sqs, queues
):
    worker.backoff = lambda receive_count: 0  # retry at once instead of after 2, 4, ... s
    send(sqs, queues["queue"], rejected_by_the_store())
    for _ in range(2):
        assert worker.poll_once() == 1
        assert drain(sqs, queues["dlq"]) == []
    assert worker.poll_once() == 1  # third delivery = maxReceiveCount
    [dead] = drain(sqs, queues["dlq"])
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["failure_reason"] == "ValueError: the crm store merges state, got 'append'"
    assert attributes["failure_stage"] == "consume"
    assert attributes["failure_receive_count"] == "3"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


def test_a_record_of_another_destination_goes_to_the_dlq_at_once(worker, sqs, queues, store):
    marketing = (FIXTURES / "messages" / "marketing_record.json").read_text()
    send(sqs, queues["queue"], marketing)
    worker.poll_once()
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason.startswith("a marketing record on the crm queue")
    assert dead["MessageAttributes"]["failure_receive_count"]["StringValue"] == "1"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    assert store.applied_count() == 0


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
    """A store that answers but fails every batch as a whole (not: cannot be reached)."""

    destination = "crm"

    def apply(self, records):
        records = list(records)
        # As drivers do, the error quotes what it was given.
        raise RuntimeError(f"commit refused while writing {records[0].fields['name']}")


def broken_store_worker(sqs, queues):
    return ConsumerWorker(
        sqs,
        queues["queue"],
        BrokenStore(),
        RedriveTarget(queues["dlq"], 3),
        ConsumerMetrics("crm"),
        wait_seconds=0,
        backoff=lambda receive_count: 0,
    )


def test_when_the_store_fails_the_batch_nothing_is_deleted(sqs, queues):
    worker = broken_store_worker(sqs, queues)
    worker.backoff = lambda receive_count: 30
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada").model_dump_json())
    worker.poll_once()
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)
    assert drain(sqs, queues["dlq"]) == []


def test_when_the_store_keeps_failing_the_batch_the_last_delivery_is_dead_lettered_with_the_reason(
    sqs, queues, caplog
):
    worker = broken_store_worker(sqs, queues)
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada Lovelace").model_dump_json())
    for _ in range(2):
        assert worker.poll_once() == 1
    assert drain(sqs, queues["dlq"]) == []
    assert worker.poll_once() == 1  # the third delivery is the queue's maxReceiveCount
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason == "store failed the batch: RuntimeError: commit refused while writing <redacted>"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    assert "Ada" not in caplog.text, "no personal data in logs"


class StoppingStore:
    """A store that is told to stop (SIGTERM) while it applies a batch."""

    def __init__(self, store, stop):
        self.store, self.stop, self.batches = store, stop, 0

    def apply(self, records):
        self.stop.set()
        self.batches += 1
        return self.store.apply(records)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_stop_during_a_batch_finishes_that_batch_and_takes_no_other(worker, sqs, queues, store):
    stop = threading.Event()
    worker.store = StoppingStore(store, stop)
    send(sqs, queues["queue"], *(record(key=f"u{i}", at=1).model_dump_json() for i in range(3)))
    worker.run(stop)
    assert worker.store.batches == 1
    assert store.applied_count() == 3 and visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


class FlakySqs:
    """A queue endpoint that cannot be reached for ``outages`` receives, then answers."""

    def __init__(self, outages):
        self.outages, self.calls = outages, 0

    def receive_message(self, **kwargs):
        self.calls += 1
        if self.calls <= self.outages:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        return {}


class RecordingStop(threading.Event):
    """Records each wait of the worker; stops it after ``polls`` receives."""

    def __init__(self, sqs, polls):
        super().__init__()
        self.sqs, self.polls, self.waits = sqs, polls, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return False

    def is_set(self):
        return self.sqs.calls >= self.polls


def test_an_unreachable_queue_is_waited_out_with_growing_jittered_pauses(store):
    sqs = FlakySqs(outages=4)
    worker = ConsumerWorker(
        sqs, "q", store, RedriveTarget(None, None), ConsumerMetrics("crm"), wait_seconds=0
    )
    stop = RecordingStop(sqs, polls=7)
    worker.run(stop)
    assert len(stop.waits) == 4  # one pause per failed receive, none after it answers
    for attempt, wait in enumerate(stop.waits, start=1):
        step = 2 ** (attempt - 1)  # about 1, 2, 4, 8 s: at least half the step, at most all
        assert step / 2 <= wait <= step, stop.waits


@pytest.fixture
def signal_handlers():
    """main() installs SIGTERM/SIGINT handlers in this process: put pytest's back afterwards."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def local_consumer_env(queues, monkeypatch, tmp_path):
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("DATASYNC_ENV", "local")
    monkeypatch.setenv("DATASYNC_STORE_DIR", str(tmp_path / "stores"))
    monkeypatch.setenv("DATASYNC_QUEUE_URL", queues["queue"])
    monkeypatch.setenv("DATASYNC_RECEIVE_WAIT_SECONDS", "1")
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_outside_local_mode_a_consumer_refuses_to_start_without_a_database(
    monkeypatch, tmp_path, capsys, signal_handlers
):
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("DATASYNC_ENV", "aws")
    monkeypatch.setenv("DATASYNC_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/crm")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["--destination", "crm"]) == exit_codes.CONFIG
    [line] = capsys.readouterr().err.splitlines()
    assert "DATABASE_URL is not set" in line and "postgresql://" in line
    with pytest.raises(ConfigError):
        database_url(Settings(DATASYNC_ENV="aws"))
    assert database_url(Settings(DATASYNC_ENV="local")) is None  # local: SQLite files
    dsn = "postgresql://db/datasync?sslmode=verify-full"
    assert database_url(Settings(DATASYNC_ENV="aws", DATABASE_URL=dsn)) == dsn


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db/datasync",  # libpq's default, prefer: plain text if refused
        "postgresql://app:secret@db/datasync?sslmode=prefer",
        "postgresql://app:secret@db/datasync?sslmode=disable",
        "postgresql://app:secret@db/datasync?sslmode=require",
        "host=db dbname=datasync password=secret sslmode=verify-ca",
    ],
)
def test_outside_local_mode_a_database_connection_that_is_not_verified_tls_is_refused(
    url, monkeypatch, tmp_path, capsys, signal_handlers
):
    monkeypatch.setenv("DATASYNC_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("DATASYNC_ENV", "aws")
    monkeypatch.setenv("DATASYNC_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/crm")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS", raising=False)
    assert main(["--destination", "crm"]) == exit_codes.CONFIG
    [line] = capsys.readouterr().err.splitlines()
    assert "Add sslmode=verify-full to DATABASE_URL" in line and "sslrootcert=" in line, line
    assert "secret" not in line
    unverified = "require" in url or "verify-ca" in url
    assert ("DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS=true" in line) == unverified, line


def test_verified_tls_is_accepted_and_unverified_tls_only_when_allowed(monkeypatch):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS", raising=False)

    def url_of(env="aws", **settings):
        return database_url(Settings(DATASYNC_ENV=env, **settings))

    verified = "postgresql://db/datasync?sslmode=verify-full&sslrootcert=/etc/ssl/rds.pem"
    assert url_of(DATABASE_URL=verified) == verified
    required = "postgresql://db/datasync?sslmode=require"
    with pytest.raises(ConfigError):
        url_of(DATABASE_URL=required)
    assert url_of(DATABASE_URL=required, DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS="true") == required
    disabled = "postgresql://db/datasync?sslmode=disable"
    with pytest.raises(ConfigError):
        url_of(DATABASE_URL=disabled, DATASYNC_DATABASE_ALLOW_UNVERIFIED_TLS="true")
    # libpq's PGSSLMODE counts when the URL names no sslmode; the URL's own wins.
    assert url_of(DATABASE_URL="postgresql://db/datasync", PGSSLMODE="verify-full")
    with pytest.raises(ConfigError):
        url_of(DATABASE_URL=disabled, PGSSLMODE="verify-full")
    assert url_of("local", DATABASE_URL="postgresql://127.0.0.1/datasync")  # a local server
    with pytest.raises(ConfigError, match="neither a postgresql:// URL") as info:
        url_of("local", DATABASE_URL="host=db password=secret oops")
    assert "secret" not in str(info.value)


def test_the_consumer_long_polls_as_long_as_its_setting_says_and_stops_on_sigterm(
    sqs, local_consumer_env, monkeypatch, signal_handlers
):
    received = []
    signalled = []
    real_poll = ConsumerWorker.poll_once

    def sigterm():
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    # The signal comes half a second into the first long poll, and the stop is timed from it:
    # start-up (imports, moto) is slow on a busy machine, and it is the stop this test bounds.
    timer = threading.Timer(0.5, sigterm)

    def poll_once(self):
        received.append(self.wait_seconds)
        if not timer.is_alive() and not signalled:
            timer.start()
        return real_poll(self)

    monkeypatch.setattr(ConsumerWorker, "poll_once", poll_once)
    try:
        assert main(["--destination", "crm"]) == exit_codes.OK
    finally:
        timer.cancel()
    assert received and set(received) == {1}
    assert signalled and time.monotonic() - signalled[0] < 1 + 2, "a stop waits one long poll"


def test_the_signal_handlers_come_before_the_heavy_imports():
    """A SIGTERM in the first half second of a pod (its imports) must not kill it either."""
    code = (
        "import sys, apps.consumers.__main__;"
        "print(sorted({'boto3', 'botocore', 'pydantic', 'psycopg'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"


def test_a_sigterm_while_the_consumer_starts_is_a_clean_stop(
    sqs, local_consumer_env, monkeypatch, signal_handlers
):
    signal.signal(signal.SIGTERM, lambda *_: None)  # what a too-late handler would leave
    real_of_queue = RedriveTarget.of_queue

    def scaled_in_while_starting(sqs, queue_url):
        os.kill(os.getpid(), signal.SIGTERM)  # KEDA scales in before the workers run
        return real_of_queue(sqs, queue_url)

    monkeypatch.setattr(RedriveTarget, "of_queue", staticmethod(scaled_in_while_starting))
    # If the stop went unseen, this later SIGTERM ends the test instead of a hang.
    timer = threading.Timer(3, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    try:
        assert main(["--destination", "crm"]) == exit_codes.OK
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2, "the SIGTERM during start-up was not seen"


def test_run_stops_between_batches(worker, sqs, queues):
    stop = threading.Event()
    stop.set()
    worker.run(stop)  # returns at once: nothing received, nothing lost
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada").model_dump_json())
    assert visible_and_in_flight(sqs, queues["queue"]) == (1, 0)


def test_health_and_metrics_endpoints():
    import urllib.request

    metrics = ConsumerMetrics("crm")
    metrics.add("applied", 3)
    server = start_health_server("127.0.0.1", 0, metrics)
    try:
        port = server.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            assert b'datasync_consumer_records_total{destination="crm",outcome="applied"} 3.0' in (
                r.read()
            )
        metrics.last_progress -= 3600
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert info.value.code == 503
    finally:
        server.close()


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


# -- record packs: one message, many records, each retried or dead-lettered on its own ----------
def send_pack(sqs, url, *records, **attributes):
    pack = RecordPack(destination=records[0].destination, records=list(records))
    extra = {k: {"DataType": "Number", "StringValue": v} for k, v in attributes.items()}
    sqs.send_message(
        QueueUrl=url,
        MessageBody=pack.model_dump_json(),
        MessageAttributes={**pack.message_attributes(), **extra},
    )


def test_a_pack_is_applied_and_deleted_and_logged_like_single_records(
    worker, sqs, queues, store, caplog
):
    records = [record(key=f"u{i}", at=1, name=f"N{i}") for i in range(3)]
    send_pack(sqs, queues["queue"], *records)
    send(sqs, queues["queue"], records[0].model_dump_json())  # an older single-record message
    with caplog.at_level("INFO", logger="datasync.consumer"):
        while worker.poll_once():
            pass
    assert [store.get(f"u{i}")["name"] for i in range(3)] == ["N0", "N1", "N2"]
    assert worker.metrics.snapshot() == {"applied": 3, "duplicate": 1}
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    traced = [t for r in caplog.records if r.getMessage() == "batch applied"
              for t in r.events.get("applied", [])]  # fmt: skip
    assert sorted(traced) == sorted(r.trace for r in records)


def test_a_failed_record_of_a_pack_is_retried_alone_then_dead_lettered_alone(
    worker, sqs, queues, store, caplog
):
    worker.backoff = lambda attempt: 0  # retry at once instead of after 2, 4, ... s
    good, bad = record(key="u1", at=1, name="Ada"), record(key="u2", at=1, op="append")
    send_pack(sqs, queues["queue"], good, bad)
    assert worker.poll_once() == 1
    assert store.get("u1")["name"] == "Ada" and store.applied_count() == 1
    # The pack is gone; a new message holds only the failed record, on its second attempt.
    # (Looking at it is a delivery too: its second attempt.)
    [retry] = sqs.receive_message(
        QueueUrl=queues["queue"], MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    assert [r.event_id for r in RecordPack.model_validate_json(retry["Body"]).records] == [
        bad.event_id
    ]
    assert retry["MessageAttributes"]["delivery_attempt"]["StringValue"] == "2"
    assert retry["MessageAttributes"]["event_ids"]["StringValue"] == str(bad.event_id)
    assert drain(sqs, queues["dlq"]) == []
    with caplog.at_level("INFO", logger="datasync.consumer"):
        assert worker.poll_once() == 1  # attempt 3 = maxReceiveCount: dead-lettered
    [dead] = drain(sqs, queues["dlq"])
    assert DestinationRecord.from_json(dead["Body"]) == bad  # the record alone, not a pack
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["failure_reason"] == "ValueError: the crm store merges state, got 'append'"
    assert attributes["failure_receive_count"] == "3"
    assert (attributes["event_id"], attributes["correlation_id"]) == (str(bad.event_id), "test")
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    assert store.applied_count() == 1, "the good record was applied once, never again"
    failures = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert failures == ["record failed; will retry", "giving up on record"]


def test_a_pack_whose_records_all_fail_comes_back_whole_after_its_backoff(worker, sqs, queues):
    worker.backoff = lambda attempt: 30
    send_pack(sqs, queues["queue"], record(key="u1", at=1, op="append"),
              record(key="u2", at=1, op="append"))  # fmt: skip
    worker.poll_once()
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)  # the same message, waiting


class ResendFails:
    """SQS that refuses the consumer's re-send to its own queue (no sqs:SendMessage there)."""

    def __init__(self, sqs, queue_url):
        self.sqs, self.queue_url = sqs, queue_url

    def send_message(self, QueueUrl, **kwargs):
        if QueueUrl == self.queue_url:
            error = {"Code": "AccessDenied", "Message": "not allowed"}
            raise ClientError({"Error": error}, "SendMessage")
        return self.sqs.send_message(QueueUrl=QueueUrl, **kwargs)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_when_the_failed_records_cannot_be_resent_the_pack_is_retried_whole(
    worker, sqs, queues, store
):
    worker.sqs = ResendFails(sqs, queues["queue"])
    worker.backoff = lambda attempt: 0
    good, bad = record(key="u1", at=1, name="Ada"), record(key="u2", at=1, op="append")
    send_pack(sqs, queues["queue"], good, bad)
    worker.poll_once()
    worker.poll_once()  # the pack again: the good record is a duplicate now
    assert worker.metrics.snapshot()["duplicate"] == 1 and store.applied_count() == 1
    worker.poll_once()  # third delivery: the failed record alone goes to the DLQ
    [dead] = drain(sqs, queues["dlq"])
    assert DestinationRecord.from_json(dead["Body"]).event_id == bad.event_id
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


class CrashingDelete:
    """A consumer that dies (here: an exception out of the loop) right before it deletes."""

    def __init__(self, sqs):
        self.sqs, self.undeleted = sqs, []

    def delete_message_batch(self, QueueUrl, Entries):
        self.undeleted += [e["ReceiptHandle"] for e in Entries]
        raise KeyboardInterrupt("killed")

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_a_crash_after_resending_and_before_deleting_loses_nothing(worker, sqs, queues, store):
    worker.backoff = lambda attempt: 0
    good, bad = record(key="u1", at=1, name="Ada"), record(key="u2", at=1, op="append")
    send_pack(sqs, queues["queue"], good, bad)
    worker.sqs = crashing = CrashingDelete(sqs)
    with pytest.raises(KeyboardInterrupt):
        worker.poll_once()
    worker.sqs = sqs
    [pack] = crashing.undeleted  # its visibility timeout ends: back beside the re-sent record
    sqs.change_message_visibility(QueueUrl=queues["queue"], ReceiptHandle=pack, VisibilityTimeout=0)
    assert visible_and_in_flight(sqs, queues["queue"]) == (2, 0)
    while worker.poll_once():
        pass
    assert store.get("u1")["name"] == "Ada" and store.applied_count() == 1
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)
    # At least once: the failed record reached the DLQ (from both copies, possibly), nothing else.
    dead = {DestinationRecord.from_json(m["Body"]).event_id for m in drain(sqs, queues["dlq"])}
    assert dead == {bad.event_id}


def test_a_pack_on_its_last_attempt_whose_batch_the_store_fails_dead_letters_each_record(
    sqs, queues
):
    worker = broken_store_worker(sqs, queues)
    records = [record(key=f"u{i}", at=1, name="Ada Lovelace") for i in range(2)]
    send_pack(sqs, queues["queue"], *records, delivery_attempt="3")
    worker.poll_once()
    dead = drain(sqs, queues["dlq"])
    assert sorted(DestinationRecord.from_json(m["Body"]).event_id for m in dead) == sorted(
        r.event_id for r in records
    )
    reasons = {m["MessageAttributes"]["failure_reason"]["StringValue"] for m in dead}
    assert reasons == {
        "store failed the batch: RuntimeError: commit refused while writing <redacted>"
    }
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


def test_a_pack_of_another_destination_goes_to_the_dlq_at_once(worker, sqs, queues, store):
    send_pack(sqs, queues["queue"], record(destination="marketing", key="u1", at=1))
    worker.poll_once()
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason.startswith("a marketing pack on the crm queue")
    assert "event_ids" in dead["MessageAttributes"], "its trace ids go with it"
    assert store.applied_count() == 0


class RecordingSqs:
    def __init__(self, sqs):
        self.sqs, self.receives = sqs, []

    def receive_message(self, **kwargs):
        self.receives.append(kwargs)
        return self.sqs.receive_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_the_consumer_asks_only_for_the_message_attributes_it_uses(worker, sqs):
    worker.sqs = RecordingSqs(sqs)
    worker.poll_once()
    [call] = worker.sqs.receives
    assert sorted(call["MessageAttributeNames"]) == sorted(
        ["delivery_attempt", "event_id", "correlation_id", "event_ids", "correlation_ids"]
    )
    assert call["AttributeNames"] == ["ApproximateReceiveCount"]


class ScriptedSqs:
    """A queue that hands out batches of the given sizes, one per receive (empty after)."""

    def __init__(self, sizes):
        self.sizes, self.calls = list(sizes), 0

    def receive_message(self, **kwargs):
        self.calls += 1
        size = self.sizes.pop(0) if self.sizes else 0
        return {"Messages": [{"ReceiptHandle": f"r{i}", "Body": "x"} for i in range(size)]}


def test_after_a_partial_batch_the_worker_waits_its_window_so_messages_gather(store):
    sqs = ScriptedSqs([3, 10, 0, 1])
    worker = ConsumerWorker(sqs, "q", store, RedriveTarget(None, None), ConsumerMetrics("crm"),
                            wait_seconds=0, batch_window_seconds=0.25)  # fmt: skip
    worker.handle = lambda messages: None
    stop = RecordingStop(sqs, polls=4)
    worker.run(stop)
    # 3 of 10: wait; a full batch (a backlog): at once; nothing (the long poll waited): at once.
    assert stop.waits == [0.25, 0.25]  # after the batch of 3 and after the batch of 1


class DlqRefuses:
    """SQS whose DLQ refuses every dead letter."""

    def __init__(self, sqs, dlq_url):
        self.sqs, self.dlq_url = sqs, dlq_url

    def send_message(self, QueueUrl, **kwargs):
        if QueueUrl == self.dlq_url:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "down"}}, "SendMessage"
            )
        return self.sqs.send_message(QueueUrl=QueueUrl, **kwargs)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_a_pack_whose_failed_records_could_not_all_be_dead_lettered_is_kept(worker, sqs, queues):
    worker.sqs = DlqRefuses(sqs, queues["dlq"])
    send_pack(sqs, queues["queue"], record(key="u1", at=1, name="Ada"),
              record(key="u2", at=1, op="append"), delivery_attempt="3")  # fmt: skip
    worker.poll_once()
    # Not deleted, not hurried back: it returns after the visibility timeout, and then the
    # failed record gets another chance to reach the DLQ with its reason.
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)
    assert drain(sqs, queues["dlq"]) == []


# -- crafted messages: each alone goes to the DLQ with its reason, the batch goes on -------------
TAG = "crafted-unit"


def dead_letter_reason(message) -> str:
    return message["MessageAttributes"]["failure_reason"]["StringValue"]


@pytest.mark.parametrize("kind", list(crafted.record_bodies("crm", TAG)))
def test_a_crafted_body_alone_is_dead_lettered_and_the_rest_of_its_batch_applied(
    kind, worker, sqs, queues, store
):
    body = crafted.record_bodies("crm", TAG)[kind]
    send(sqs, queues["queue"], body, record(key="u1", at=1, name="Ada").model_dump_json())
    assert worker.poll_once() == 2
    assert store.get("u1")["name"] == "Ada" and store.applied_count() == 1
    [dead] = drain(sqs, queues["dlq"])
    assert dead["Body"] == body, "the message as it came, to inspect"
    reason = dead_letter_reason(dead)
    expected = "a marketing record on the crm queue" if "another" in kind else "not a destination"
    assert reason.startswith(expected), reason
    assert TAG not in reason, "the reason quotes no input"
    assert dead["MessageAttributes"]["failure_receive_count"]["StringValue"] == "1"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


@pytest.mark.parametrize(
    "value", list(crafted.BAD_ATTEMPTS.values()), ids=list(crafted.BAD_ATTEMPTS)
)
def test_a_delivery_attempt_that_is_not_one_makes_its_message_poison(
    value, worker, sqs, queues, store
):
    crafted_attempt = record(key="u2", at=1, name="Eve").model_dump_json()
    sqs.send_message(
        QueueUrl=queues["queue"],
        MessageBody=crafted_attempt,
        MessageAttributes={"delivery_attempt": {"DataType": "String", "StringValue": value}},
    )
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada").model_dump_json())
    assert worker.poll_once() == 2
    assert store.get("u1")["name"] == "Ada" and store.get("u2") is None
    [dead] = drain(sqs, queues["dlq"])
    assert dead["Body"] == crafted_attempt
    assert dead_letter_reason(dead) == (
        "the delivery_attempt attribute is not a whole number from 1 to 1000"
    )
    assert dead["MessageAttributes"]["failure_receive_count"]["StringValue"] == "1"
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 0)


def forged(kind: str, key: str) -> str:
    return crafted.forged_versions("crm", key, TAG)[kind]


@pytest.mark.parametrize("kind", list(crafted.forged_versions("crm", "u1", TAG)))
def test_a_forged_version_neither_outranks_nor_erases_and_a_later_real_update_applies(
    kind, worker, sqs, queues, store
):
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada", country="GB").model_dump_json())
    worker.poll_once()
    before = store.state("u1")
    send(sqs, queues["queue"], forged(kind, "u1"))
    worker.poll_once()
    assert store.state("u1") == before, "the forged record changed the stored state"
    [dead] = drain(sqs, queues["dlq"])
    assert "version" in dead_letter_reason(dead), dead_letter_reason(dead)
    # A real update written after the real record (but long before the forged version's time):
    send(sqs, queues["queue"], record(key="u1", at=2, name="Augusta").model_dump_json())
    worker.poll_once()
    state = store.state("u1")
    assert not state.deleted and state.fields == {"name": "Augusta", "country": "GB"}
    assert crafted.FORGED_NAME not in json.dumps(store.get("u1"))


class OneResultShort:
    """A store with a bug: on its first batch it answers one record too few."""

    def __init__(self, store):
        self.store, self.batches = store, 0

    def apply(self, records):
        self.batches += 1
        results = self.store.apply(records)
        return results[:-1] if self.batches == 1 else results

    def __getattr__(self, name):
        return getattr(self.store, name)


class StopAfterReceives(threading.Event):
    """Stops the worker after ``polls`` receives; records its waits and, instead of waiting,
    calls ``meanwhile`` (what happens while the worker backs off)."""

    def __init__(self, sqs, polls, meanwhile):
        super().__init__()
        self.sqs, self.polls, self.meanwhile, self.waits = RecordingSqs(sqs), polls, meanwhile, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        self.meanwhile()
        return False

    def is_set(self):
        return len(self.sqs.receives) >= self.polls


def test_an_unexpected_error_in_a_batch_is_logged_and_the_worker_goes_on(
    worker, sqs, queues, store, caplog
):
    worker.store = OneResultShort(store)
    later = record(key="u2", at=1, name="Bob").model_dump_json()
    stop = StopAfterReceives(sqs, polls=2, meanwhile=lambda: send(sqs, queues["queue"], later))
    worker.sqs = stop.sqs
    send(sqs, queues["queue"], record(key="u1", at=1, name="Ada Lovelace").model_dump_json())
    with caplog.at_level("INFO", logger="datasync.consumer"):
        worker.run(stop)
    [failure] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert failure.getMessage() == "batch failed unexpectedly, backing off"
    assert failure.error.startswith("StopIteration in _settle_all (worker.py:"), failure.error
    assert "Ada" not in caplog.text, "no personal data in the log"
    assert len(stop.waits) == 1 and 0.5 <= stop.waits[0] <= 1, "one back-off, about 1 s"
    assert store.get("u2")["name"] == "Bob", "the worker went on with the next batch"
    # The failed batch was not deleted: it comes back after its visibility timeout.
    assert visible_and_in_flight(sqs, queues["queue"]) == (0, 1)


def test_a_message_whose_parsing_fails_unexpectedly_is_dead_lettered_alone(
    worker, sqs, queues, store, monkeypatch
):
    from apps.consumers import worker as module

    real_parse = module.parse_queue_message

    def parse_with_a_bug(body):
        if "Eve" in body:
            raise RuntimeError(f"bug while reading {body}")
        return real_parse(body)

    monkeypatch.setattr(module, "parse_queue_message", parse_with_a_bug)
    buggy = record(key="u2", at=1, name="Eve").model_dump_json()
    send(sqs, queues["queue"], buggy, record(key="u1", at=1, name="Ada").model_dump_json())
    assert worker.poll_once() == 2
    assert store.get("u1")["name"] == "Ada" and store.get("u2") is None
    [dead] = drain(sqs, queues["dlq"])
    assert dead["Body"] == buggy
    reason = dead_letter_reason(dead)
    assert reason.startswith("unreadable message: RuntimeError in parse_with_a_bug"), reason
    assert "Eve" not in reason
