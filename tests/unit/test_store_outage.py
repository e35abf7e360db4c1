"""A store that cannot be reached is nobody's failure; a store that refuses a record is.

Two halves: the stores tell the two apart (SQLite faults for real: a locked file, an unwritable
file, a directory that cannot be made, a trigger that refuses rows; PostgreSQL's errors by their
SQLSTATE), and the consumer waits an outage out: it holds the batch in hand (invisible, no
attempt counted), receives nothing meanwhile, says why in its readiness, and resumes by itself.
The PostgreSQL server restarted, crashed and kept down while events flow is
tests/integration/test_store_outages.py.
"""

from __future__ import annotations

import threading
import time

import psycopg.errors
import pytest
from psycopg_pool import PoolTimeout

from apps.consumers.app import prepare_store
from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import HOLD_SECONDS, ConsumerWorker, RedriveTarget
from datasync.core.stores import StoreUnavailable, connections, open_store
from tests.builders import record
from tests.faults import FaultUnavailable, locked, unwritable
from tests.unit.conftest import drain


@pytest.fixture(autouse=True)
def short_lock_timeout(monkeypatch):
    """Writers wait 0.2 s for SQLite's lock instead of 5 s (read when a connection opens)."""
    monkeypatch.setattr(connections, "LOCK_TIMEOUT_SECONDS", 0.2)


def apply_one(store, key="u1", **fields):
    [result] = store.apply([record(key=key, at=1, **fields)])
    return result


# -- the stores tell "cannot be reached" from "refuses this record" ----------------------------
def test_a_locked_file_is_unreachable_and_the_same_store_writes_once_it_is_free(tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    with locked(tmp_path / "crm.sqlite3"):
        with pytest.raises(StoreUnavailable, match="database is locked"):
            apply_one(store, name="Ada")
        with pytest.raises(StoreUnavailable, match="database is locked"):
            store.check()
        assert store.get("u1") is None  # WAL: reading still works
    store.check()
    assert apply_one(store, name="Ada").ok and store.get("u1")["name"] == "Ada"
    store.close()


def test_an_unwritable_file_is_unreachable_until_it_is_writable_again(tmp_path):
    open_store("crm", store_dir=tmp_path).close()
    store = open_store("crm", store_dir=tmp_path, prepare=False)  # opens when first used
    try:
        with unwritable(tmp_path / "crm.sqlite3"):
            with pytest.raises(StoreUnavailable, match="readonly database"):
                apply_one(store, name="Ada")
            with pytest.raises(StoreUnavailable, match="readonly database"):
                store.check()
    except FaultUnavailable as exc:
        pytest.skip(str(exc))
    # The connection that found the file read-only was dropped: this one can write.
    assert apply_one(store, name="Ada").ok and store.get("u1")["name"] == "Ada"
    store.close()


def test_a_directory_that_cannot_be_made_is_unreachable_until_it_can(tmp_path):
    store_dir = tmp_path / "stores"
    store_dir.write_text("a file where the store's directory should be")
    store = open_store("crm", store_dir=store_dir, prepare=False)
    with pytest.raises(StoreUnavailable, match="FileExistsError"):
        store.prepare()
    store_dir.unlink()
    assert apply_one(store, name="Ada").ok
    store.close()


def test_a_trigger_that_refuses_rows_fails_the_record_not_the_store(tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    with store._session() as sql:
        sql(
            "CREATE TRIGGER broken BEFORE INSERT ON datasync_crm_records"
            " BEGIN SELECT RAISE(ABORT, 'broken on purpose'); END"
        )
    result = apply_one(store, name="Ada")
    assert result.error == "IntegrityError: broken on purpose"
    store.check()  # the store itself takes writes
    store.close()


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CrashShutdown("terminating connection because of crash"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.DiskFull("could not extend file"),
        psycopg.errors.TooManyConnections("too many clients already"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.ConnectionTimeout("connection timeout expired"),
        psycopg.InterfaceError("the connection is closed"),
        PoolTimeout("couldn't get a connection after 5.00 sec"),
    ],
    ids=type,
)
def test_postgresql_errors_that_say_the_server_is_not_there_are_unreachable(error):
    assert connections.is_unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.RaiseException("broken on purpose"),  # a trigger's RAISE EXCEPTION
        psycopg.errors.CheckViolation("violates check constraint"),
        psycopg.errors.InvalidTextRepresentation("invalid input syntax"),
        psycopg.errors.UndefinedTable("relation does not exist"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.DataError("cannot adapt"),
        ValueError("the crm store merges state, got 'append'"),
    ],
    ids=type,
)
def test_errors_about_the_record_are_refusals(error):
    assert not connections.is_unreachable(error)


# -- the consumer waits an outage out ----------------------------------------------------------
class OutageStore:
    """A real store behind a switch: while ``down`` every call raises StoreUnavailable."""

    def __init__(self, store, down=True):
        self.store, self.down, self.calls = store, down, 0

    def _gate(self):
        self.calls += 1
        if self.down:
            raise StoreUnavailable("OperationalError: connection refused")

    def apply(self, records):
        self._gate()
        return self.store.apply(records)

    def check(self):
        self._gate()
        self.store.check()

    def prepare(self):
        self._gate()
        self.store.prepare()

    def __getattr__(self, name):
        return getattr(self.store, name)


class ScriptedStop(threading.Event):
    """The worker's stop: each wait returns at once and runs ``on_wait(n)`` (n: waits so far)."""

    def __init__(self, on_wait):
        super().__init__()
        self.on_wait, self.waits = on_wait, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        self.on_wait(len(self.waits))
        return self.is_set()


class RecordingSqs:
    def __init__(self, sqs):
        self.sqs, self.receives, self.visibility = sqs, 0, []

    def receive_message(self, **kwargs):
        self.receives += 1
        return self.sqs.receive_message(**kwargs)

    def change_message_visibility_batch(self, **kwargs):
        self.visibility.append([e["VisibilityTimeout"] for e in kwargs["Entries"]])
        return self.sqs.change_message_visibility_batch(**kwargs)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


@pytest.fixture
def store(tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    yield store
    store.close()


def outage_worker(sqs, queues, store, stop):
    metrics = ConsumerMetrics("crm")
    metrics.store_reachable()
    worker = ConsumerWorker(
        RecordingSqs(sqs), queues["queue"], OutageStore(store, down=False),
        RedriveTarget.of_queue(sqs, queues["queue"]), metrics, wait_seconds=0,
    )  # fmt: skip
    worker.stop = stop
    return worker


def test_a_batch_on_its_last_attempt_is_held_through_an_outage_and_applied_not_dead_lettered(
    sqs, queues, store
):
    # The queue's maxReceiveCount is 3 and this message's records are on attempt 3: a failure
    # now would dead-letter them. An outage is no failure.
    sqs.send_message(
        QueueUrl=queues["queue"], MessageBody=record(key="u1", at=1, name="Ada").model_dump_json(),
        MessageAttributes={"delivery_attempt": {"DataType": "Number", "StringValue": "3"}},
    )  # fmt: skip
    seen_during = {}

    def during_outage(waits):
        if waits == 1:
            seen_during["problem"] = worker.metrics.store_problem
            seen_during["in_flight"] = sqs.get_queue_attributes(
                QueueUrl=queues["queue"], AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        if waits == 4:
            worker.store.down = False  # the database is back

    worker = outage_worker(sqs, queues, store, ScriptedStop(during_outage))
    worker.store.down = True
    assert worker.poll_once() == 1
    assert store.get("u1")["name"] == "Ada"
    assert drain(sqs, queues["dlq"]) == []
    assert worker.metrics.snapshot() == {"applied": 1}, "the outage counted as a failure"
    assert seen_during == {
        "problem": "store unreachable: OperationalError: connection refused",
        "in_flight": "1",
    }
    assert worker.metrics.store_problem is None
    # Held: hidden for HOLD_SECONDS at the first failure (then every HEARTBEAT_SECONDS).
    assert worker.sqs.visibility == [[HOLD_SECONDS]]
    waits = worker.stop.waits
    assert len(waits) == 4 and all(0 < w <= 5 for w in waits) and waits[0] <= 0.5, waits
    assert sqs.receive_message(QueueUrl=queues["queue"]).get("Messages") is None  # deleted


def test_while_the_store_is_unreachable_no_worker_receives_and_it_resumes_by_itself(
    sqs, queues, store
):
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=record(key="u1", at=1).model_dump_json())

    def back_after_three_checks(waits):
        assert worker.sqs.receives == 0, "received while the store was unreachable"
        if waits == 3:
            worker.store.down = False

    stop = ScriptedStop(back_after_three_checks)
    worker = outage_worker(sqs, queues, store, stop)
    worker.store.down = True
    # Another worker of the process found the store unreachable: this one receives nothing.
    worker.metrics.store_unreachable("OperationalError: connection refused")
    old_poll = worker.poll_once

    def poll_once():
        received = old_poll()
        stop.set()  # one receive after the outage is enough
        return received

    worker.poll_once = poll_once
    worker.run(stop)
    assert worker.sqs.receives == 1 and store.applied_count() == 1
    # Three checks failed, one passed, then the batch: applied.
    assert len(stop.waits) == 3 and worker.store.calls == 5
    assert worker.metrics.store_problem is None


def test_a_store_that_answers_but_refuses_the_check_counts_as_reachable(sqs, queues, store):
    class Refusing(OutageStore):
        def check(self):
            raise ValueError("a trigger refused the row")  # the store answered

    stop = ScriptedStop(lambda waits: None)
    worker = outage_worker(sqs, queues, store, stop)
    worker.store = Refusing(store, down=False)
    worker.metrics.store_unreachable("OperationalError: connection refused")
    worker.poll_once = lambda: stop.set() or 0
    worker.run(stop)  # would raise if the refusal escaped the loop
    assert worker.metrics.store_problem is None and stop.waits == []


def test_a_stop_during_an_outage_hands_the_batch_back_at_once_and_dead_letters_nothing(
    sqs, queues, store
):
    body = record(key="u1", at=1).model_dump_json()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=body)
    stop = ScriptedStop(lambda waits: stop.set())  # SIGTERM during the first wait
    worker = outage_worker(sqs, queues, store, stop)
    worker.store.down = True
    worker.poll_once()
    assert worker.sqs.visibility == [[HOLD_SECONDS], [0]]  # held, then handed back
    assert store.applied_count() == 0 and drain(sqs, queues["dlq"]) == []
    [again] = sqs.receive_message(QueueUrl=queues["queue"])["Messages"]  # visible at once
    assert again["Body"] == body


def test_a_real_locked_sqlite_file_holds_the_batch_until_it_is_free(sqs, queues, tmp_path):
    store = open_store("crm", store_dir=tmp_path)
    worker = ConsumerWorker(sqs, queues["queue"], store, RedriveTarget.of_queue(sqs, queues["queue"]),
                            ConsumerMetrics("crm"), wait_seconds=0)  # fmt: skip
    body = record(key="u1", at=1, name="Ada").model_dump_json()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=body)
    held = threading.Event()

    def another_writer():  # holds the write lock for a second, 5 times the lock timeout
        with locked(tmp_path / "crm.sqlite3"):
            held.set()
            time.sleep(1.0)

    writer = threading.Thread(target=another_writer)
    writer.start()
    assert held.wait(5)
    assert worker.poll_once() == 1
    writer.join()
    assert store.applied_count() == 1 and drain(sqs, queues["dlq"]) == []
    assert worker.metrics.snapshot() == {"applied": 1}
    store.close()


def test_a_consumer_whose_database_is_down_at_start_is_unready_until_it_answers(store):
    metrics = ConsumerMetrics("crm")
    assert metrics.store_problem == "the store has not answered yet"
    down = OutageStore(store)
    prepare_store(down, metrics)
    assert metrics.store_problem == "store unreachable: OperationalError: connection refused"
    assert (
        metrics.registry.get_sample_value(
            "datasync_consumer_store_unreachable", {"destination": "crm"}
        )
        == 1
    )
    down.down = False
    prepare_store(down, metrics)
    assert metrics.store_problem is None
    assert (
        metrics.registry.get_sample_value(
            "datasync_consumer_store_unreachable", {"destination": "crm"}
        )
        == 0
    )
