"""The DLQ guarantees, against the session stack (MiniStack + the real Terraform):

- malformed messages put straight onto each destination queue, and malformed events put onto the
  bus, end in that destination's DLQ with failure_reason/failure_stage, while the consumers keep
  running: a good record or event sent after them is applied;
- a record the store always rejects reaches the DLQ after the queue's maxReceiveCount, with its
  reason, and its receives are counted (the consumer's log and the dead letter both say so);
- a transient Lambda failure (the destination queue deleted and re-created while events flow, so
  SendMessageBatch fails for a while) is retried, and every event is applied once;
- a redrive after a fix (a trigger that refused every row) applies each message once; repeating it, even
  with the same messages back in the DLQ, applies nothing twice. That consumer then stops on
  SIGTERM within its long-poll wait.

The samples are files: tests/fixtures/messages (destination records, one not JSON) and
tests/fixtures/events. The session's consumers are never stopped; the test that needs to break
a store runs a consumer of its own on a queue of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datasync.contract import DESTINATIONS, DestinationRecord
from datasync.core.stores import open_store
from devstack.paths import ROOT, venv_bin
from tests.conftest import FIXTURES, load_event
from tests.flows import unique_email
from tests.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.integration

MESSAGES = FIXTURES / "messages"
# <destination>_record.json: a valid record of each destination (and, on another
# destination's queue, a wrong one).
MALFORMED_RECORDS = {
    "wrong schema version": "record_wrong_schema_version.json",
    "missing fields": "record_missing_fields.json",
    "not JSON": "record_not_json.txt",
}


def tag() -> str:
    return uuid.uuid4().hex[:8]


def fresh_record(destination: str, **changes: Any) -> DestinationRecord:
    """The destination's sample record with new ids (and ``changes``), so each test run is new."""
    sample = DestinationRecord.from_json((MESSAGES / f"{destination}_record.json").read_text())
    event_id = uuid.uuid4()
    key = str(event_id) if destination == "analytics" else str(uuid.uuid4())
    version = f"{sample.version.split('#')[0]}#{event_id}"
    return sample.model_copy(
        update={"event_id": event_id, "key": key, "version": version, **changes}
    )


def trace_attributes(correlation_id: str) -> dict[str, Any]:
    return {"correlation_id": {"DataType": "String", "StringValue": correlation_id}}


def dead_letters(
    pipeline: Pipeline, destination: str, wanted: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every message in the destination's DLQ that ``wanted`` picks, removed from the DLQ.

    The DLQ also holds other tests' dead letters: one pass hides what it reads for a moment, so
    that it reaches past the first ten, then makes the others visible again.
    """
    sqs, url = pipeline.aws("sqs"), pipeline.dlq_url(destination)
    found, others = [], []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=15, WaitTimeSeconds=0,
        MessageAttributeNames=["All"], AttributeNames=["All"],
    ).get("Messages", []):  # fmt: skip
        for message in batch:
            (found if wanted(message) else others).append(message)
    for message in found:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for start in range(0, len(others), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(others[start : start + 10])
            ],
        )
    return found


def attributes_of(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


def correlation_of(message: dict[str, Any]) -> str | None:
    return attributes_of(message).get("correlation_id")


def collect_dead_letters(
    pipeline: Pipeline, destination: str, wanted: Callable[[dict[str, Any]], bool], count: int
) -> list[dict[str, Any]]:
    collected: list[dict[str, Any]] = []

    def all_there() -> bool:
        collected.extend(dead_letters(pipeline, destination, wanted))
        return len(collected) >= count

    wait_until(all_there, timeout=90, interval=1, what=f"{count} dead letters in {destination}")
    assert len(collected) == count, [m["Body"][:80] for m in collected]
    return collected


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def queue_depth(pipeline: Pipeline, url: str) -> int:
    a = pipeline.aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    a = a["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


# -- malformed input ---------------------------------------------------------------------------
def test_malformed_messages_on_each_destination_queue_are_dead_lettered_and_consumers_go_on(
    pipeline: Pipeline,
) -> None:
    sqs, run = pipeline.aws("sqs"), tag()
    expected: dict[str, dict[str, str]] = {}  # destination -> correlation id -> kind
    good: dict[str, DestinationRecord] = {}
    for index, destination in enumerate(DESTINATIONS):
        other = DESTINATIONS[(index + 1) % len(DESTINATIONS)]
        kinds = {kind: (MESSAGES / name).read_text() for kind, name in MALFORMED_RECORDS.items()}
        kinds["wrong destination"] = fresh_record(other).model_dump_json()
        expected[destination] = {}
        for kind, body in kinds.items():
            correlation_id = f"malformed-{run}-{destination}-{kind.replace(' ', '-')}"
            expected[destination][correlation_id] = kind
            sqs.send_message(
                QueueUrl=pipeline.queue_url(destination),
                MessageBody=body,
                MessageAttributes=trace_attributes(correlation_id),
            )
        # Sent after the malformed ones: the consumer must still be there to apply it.
        good[destination] = fresh_record(destination)
        sqs.send_message(
            QueueUrl=pipeline.queue_url(destination),
            MessageBody=good[destination].model_dump_json(),
        )
    for destination in DESTINATIONS:
        mine = expected[destination]
        dead = collect_dead_letters(
            pipeline, destination, lambda m, mine=mine: correlation_of(m) in mine, len(mine)
        )
        for message in dead:
            attributes = attributes_of(message)
            kind = mine[attributes["correlation_id"]]
            assert attributes["failure_stage"] == "consume", kind
            assert attributes["failure_receive_count"] == "1", f"{kind}: retried, not poison"
            if kind == "wrong destination":
                assert f"on the {destination} queue" in attributes["failure_reason"]
            else:
                assert attributes["failure_reason"].startswith("not a destination record"), kind
        wait_until(
            lambda d=destination: _applied(pipeline, d, good[d]),
            what=f"the good {destination} record",
        )


def _applied(pipeline: Pipeline, destination: str, record: DestinationRecord) -> bool:
    store = open_store(destination, store_dir=Path(pipeline.env["DATASYNC_STORE_DIR"]))  # type: ignore[arg-type]
    try:
        if destination == "analytics":
            view = store.get(str(record.fields["subject"])) or {"events": []}
            return str(record.event_id) in {e["event_id"] for e in view["events"]}
        return store.get(record.key) is not None
    finally:
        store.close()


def test_malformed_events_on_the_bus_are_dead_lettered_by_every_lambda_and_a_good_one_flows(
    pipeline: Pipeline,
) -> None:
    run = tag()
    details: dict[str, str] = {}  # kind -> Detail text, each made unique to this run
    for kind, name in (
        ("wrong schema version", "poison_wrong_schema_version"),
        ("missing fields", "poison_missing_fields"),
    ):
        detail = load_event(name)
        detail["correlation_id"] = f"{detail['correlation_id']}-{run}"
        details[kind] = json.dumps(detail)
    # AWS refuses a Detail that is not a JSON object at PutEvents (MalformedDetail); MiniStack
    # delivers it, so the Lambda must cope.
    details["not JSON"] = f'{{"event_id": "{run}", "data": '
    # A destination record is not an event: the "wrong destination" of the bus.
    details["a record, not an event"] = fresh_record(
        "crm", correlation_id=f"rec-{run}"
    ).model_dump_json()
    entries = [
        {"Source": "datasync.api", "DetailType": "UserCreated", "Detail": detail,
         "EventBusName": pipeline.env["DATASYNC_EVENT_BUS_NAME"]}
        for detail in details.values()
    ]  # fmt: skip
    assert pipeline.aws("events").put_events(Entries=entries)["FailedEntryCount"] == 0
    user = pipeline.create_user(email=unique_email("after-poison"), name="After Poison",
                                marketing_opt_in=True)  # fmt: skip
    for destination in DESTINATIONS:
        dead = collect_dead_letters(pipeline, destination, lambda m: run in m["Body"], len(details))
        for message in dead:
            attributes = attributes_of(message)
            assert attributes["failure_stage"] == "transform"
            assert attributes["failure_receive_count"] == "1", "poison is never retried"
            reason = attributes["failure_reason"]
            assert reason.startswith(("invalid event: ", "not an EventBridge event")), reason
            assert "mallory" not in reason.lower(), "no input values in reasons"
            assert json.loads(message["Body"])["detail"], "the whole bus event, to redrive"
        wait_until(lambda d=destination: pipeline.get(d, user["user_id"]), what=f"{destination}")


def test_an_asynchronous_invocation_still_transforms_its_one_event(
    pipeline: Pipeline, stack: Any
) -> None:
    """The other input path: an EventBridge event handed to the function directly."""
    envelope = load_event("eventbridge_user_created")
    user_id = str(uuid.uuid4())
    envelope["detail"].update(event_id=str(uuid.uuid4()), correlation_id=f"async-{tag()}")
    envelope["detail"]["data"]["user_id"] = user_id
    response = pipeline.aws("lambda").invoke(
        FunctionName=stack.outputs["lambda_function_names"]["crm"],
        InvocationType="Event",
        Payload=json.dumps(envelope).encode(),
    )
    assert response["StatusCode"] == 202
    crm = wait_until(lambda: pipeline.get("crm", user_id), what="the asynchronously sent record")
    assert crm["name"] == envelope["detail"]["data"]["name"]


# -- a message that always fails ---------------------------------------------------------------
def test_a_record_the_store_always_rejects_reaches_the_dlq_after_max_receive_count(
    pipeline: Pipeline, stack: Any
) -> None:
    sqs = pipeline.aws("sqs")
    policy = sqs.get_queue_attributes(
        QueueUrl=pipeline.queue_url("crm"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    max_receive_count = int(json.loads(policy)["maxReceiveCount"])
    correlation_id = f"always-fails-{tag()}"
    # Valid as a record, but the crm store merges state: it can never append.
    rejected = fresh_record("crm", op="append", correlation_id=correlation_id)
    sqs.send_message(QueueUrl=pipeline.queue_url("crm"), MessageBody=rejected.model_dump_json(),
                     MessageAttributes=trace_attributes(correlation_id))  # fmt: skip
    [dead] = collect_dead_letters(pipeline, "crm", lambda m: correlation_of(m) == correlation_id, 1)
    attributes = attributes_of(dead)
    assert attributes["failure_reason"] == "ValueError: the crm store merges state, got 'append'"
    assert attributes["failure_stage"] == "consume"
    assert attributes["failure_receive_count"] == str(max_receive_count)
    receives = Counter(
        line["message"]
        for line in log_lines(stack.config.layout.logs_dir / "consumer-crm.log")
        if line.get("event_id") == str(rejected.event_id)
    )
    assert receives == {
        "record failed; will retry": max_receive_count - 1,
        "giving up on record": 1,
    }
    assert pipeline.get("crm", rejected.key) is None


# -- a transient Lambda failure ------------------------------------------------------------------
# The queue comes back as Terraform made it, its policy included (the IAM enforcement test reads
# every queue's policy later in the session).
QUEUE_SETTINGS = ("VisibilityTimeout", "ReceiveMessageWaitTimeSeconds", "MessageRetentionPeriod",
                  "RedrivePolicy", "SqsManagedSseEnabled", "Policy")  # fmt: skip
EVENTS = 20


def lambda_outcomes(pipeline: Pipeline, stack: Any, run: str) -> Counter[str]:
    """How often the Lambdas logged one of this run's events under each batch outcome, read
    from CloudWatch Logs (/aws/lambda/<function>, where the emulator writes them as AWS does).

    The intake's lines count each event it received as sent to every destination, less what it
    handed over to a destination's own function (counted as handed_over)."""
    seen: Counter[str] = Counter()
    logs = pipeline.aws("logs")
    functions = [stack.outputs["intake_function_name"]]
    for function in [*functions, *stack.outputs["lambda_function_names"].values()]:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=f"/aws/lambda/{function}", filterPattern=run
        )
        for page in pages:
            for event in page["events"]:
                if run not in event["message"] or not event["message"].startswith("{"):
                    continue
                line = json.loads(event["message"])
                if line.get("message") == "batch transformed":
                    for outcome, traces in line["events"].items():
                        seen[outcome] += sum(run in trace for trace in traces)
                elif line.get("message") == "batch shaped":
                    received = sum(run in t for t in line["events"].get("received", []))
                    handed = sum(
                        run in t
                        for ids in line["events"].get("handed_over", {}).values()
                        for t in ids
                    )
                    seen["sent"] += received * len(DESTINATIONS) - handed
                    seen["handed_over"] += handed
    return seen


def test_a_destination_queue_that_is_gone_for_a_while_delays_events_and_loses_none(
    pipeline: Pipeline, stack: Any
) -> None:
    sqs, run = pipeline.aws("sqs"), tag()
    url = pipeline.queue_url("analytics")
    settings = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # Messages in the queue would go with it: start from an empty queue, as between bursts.
    wait_until(lambda: queue_depth(pipeline, url) == 0, timeout=60, what="analytics drained")
    sqs.delete_queue(QueueUrl=url)
    users = []
    try:
        for i in range(EVENTS):
            response = pipeline.call(
                "POST", "/v1/users", {"email": unique_email("transient"), "name": f"Transient {i}"},
                {"X-Correlation-ID": f"transient-{run}-{i}"},
            )  # fmt: skip
            assert response.status == 202, response.body
            users.append(response.body)
        wait_until(
            lambda: lambda_outcomes(pipeline, stack, run)["retry"] > 0,
            timeout=60, interval=0.5, what="the analytics Lambda failing to send",
        )  # fmt: skip
    finally:
        created = sqs.create_queue(
            QueueName=url.rsplit("/", 1)[1],
            Attributes={k: settings[k] for k in QUEUE_SETTINGS if k in settings},
        )["QueueUrl"]
    assert created == url
    started = time.monotonic()
    for user in users:
        events = wait_until(
            lambda u=user: (pipeline.get("analytics", u["user_id"]) or {}).get("events"),
            timeout=120, what="the event, after the queue came back",
        )  # fmt: skip
        assert [e["event_id"] for e in events] == [user["event_id"]], "applied exactly once"
        # The other destinations never noticed.
        wait_until(lambda u=user: pipeline.get("crm", u["user_id"]), what="the crm record")
    print(f"all {EVENTS} events applied {time.monotonic() - started:.1f}s after the queue returned")
    assert dead_letters(pipeline, "analytics", lambda m: run in m["Body"]) == []
    # A function's log line reaches CloudWatch Logs after its invocation returns, which can be
    # after the consumer applied what it sent.
    outcomes = wait_until(
        lambda: (o := lambda_outcomes(pipeline, stack, run))["sent"] >= EVENTS * len(DESTINATIONS)
        and o,
        timeout=30, what="every send in the Lambdas' log lines",
    )  # fmt: skip
    assert outcomes["retry"] >= 1 and outcomes["dead_lettered"] == 0, outcomes
    # The intake handed the analytics records to the analytics function, which retried them
    # (those it shaped after the queue came back it sent itself).
    assert 1 <= outcomes["handed_over"] <= EVENTS, outcomes
    assert outcomes["sent"] >= EVENTS * len(DESTINATIONS), outcomes


# -- redrive after a fix -------------------------------------------------------------------------
RECORDS = 5
RECEIVE_WAIT = 5  # the consumer's DATASYNC_RECEIVE_WAIT_SECONDS: a stop takes at most this long
REFUSE_EVERY_ROW = """
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'broken on purpose'; END $$;
CREATE TRIGGER broken BEFORE INSERT ON datasync_crm_applied_events
    FOR EACH ROW EXECUTE FUNCTION refuse();
"""


@pytest.fixture
def own_queue(pipeline: Pipeline):
    queues = pipeline.create_queue_with_dlq(f"redrive-{tag()}", max_receive_count=3,
                                            VisibilityTimeout="20")  # fmt: skip
    yield queues
    for url in queues.values():
        pipeline.aws("sqs").delete_queue(QueueUrl=url)


@pytest.fixture
def own_database(postgres_url: str):
    import psycopg

    schema = f"redrive_{tag()}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_redrive_after_a_fix_applies_each_message_once_and_repeating_it_applies_nothing_twice(
    pipeline: Pipeline, own_queue: dict[str, str], own_database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import psycopg

    from apps.cli.main import main

    sqs, log = pipeline.aws("sqs"), tmp_path / "consumer.log"
    env = {**os.environ, **pipeline.env, "DATABASE_URL": own_database,
           "DATASYNC_QUEUE_URL": own_queue["queue"],
           "DATASYNC_RECEIVE_WAIT_SECONDS": str(RECEIVE_WAIT)}  # fmt: skip
    with log.open("ab") as out:
        consumer = subprocess.Popen(
            [venv_bin("datasync-consumer"), "--destination", "crm"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # The consumer creates its tables as it starts; the trigger must come after that.
        wait_until(lambda: "consumer started" in log.read_text(), what="the consumer started")
        store = open_store("crm", database_url=own_database)
        records = [fresh_record("crm", fields={"name": f"Redriven {i}"}) for i in range(RECORDS)]
        with psycopg.connect(own_database, autocommit=True) as db:
            # The fault: a bad migration makes the store refuse every row (a store that cannot
            # be reached would not count: its records wait, they are not dead-lettered).
            db.execute(REFUSE_EVERY_ROW)
            for r in records:
                sqs.send_message(QueueUrl=own_queue["queue"], MessageBody=r.model_dump_json())
            wait_until(lambda: queue_depth(pipeline, own_queue["dlq"]) == RECORDS, timeout=90,
                       what="every record dead-lettered while the store refuses them")  # fmt: skip
            db.execute("DROP TRIGGER broken ON datasync_crm_applied_events")  # the fix
        for name, value in {**pipeline.env, "DATASYNC_ENV_FILE": str(tmp_path / "none.env"),
                            "DATASYNC_CRM_QUEUE_URL": own_queue["queue"],
                            "DATASYNC_CRM_DLQ_URL": own_queue["dlq"]}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        assert main(["dlq", "list", "crm", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert {(m["stage"], m["receive_count"]) for m in shown} == {("consume", "3")}
        assert all(m["reason"].startswith("RaiseException: broken on purpose") for m in shown)
        bodies = [m["Body"] for m in _peek_all(sqs, own_queue["dlq"])]

        assert _redrive(main, capsys) == {"to_buffer_queue": 0, "to_queue": RECORDS, "failed": []}
        wait_until(lambda: store.applied_count() == RECORDS, what="the redriven records applied")
        assert [store.get(r.key)["name"] for r in records] == [r.fields["name"] for r in records]
        # Again, with the DLQ empty: nothing moves.
        assert _redrive(main, capsys) == {"to_buffer_queue": 0, "to_queue": 0, "failed": []}
        # Again, with the same messages back in the DLQ (dead-lettered twice, as at-least-once
        # delivery allows): they arrive and change nothing.
        for body in bodies:
            sqs.send_message(QueueUrl=own_queue["dlq"], MessageBody=body)
        assert _redrive(main, capsys) == {"to_buffer_queue": 0, "to_queue": RECORDS, "failed": []}
        wait_until(lambda: _duplicates(log) >= {str(r.event_id) for r in records},
                   what="the second copies reaching the consumer")  # fmt: skip
        assert store.applied_count() == RECORDS
        assert queue_depth(pipeline, own_queue["dlq"]) == 0
        store.close()
    finally:
        consumer.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        code = consumer.wait(RECEIVE_WAIT + 30)
    stopped_after = time.monotonic() - stopping
    print(f"consumer stopped {stopped_after:.1f}s after SIGTERM (long poll {RECEIVE_WAIT}s)")
    assert code == 0, log.read_text()[-2000:]
    assert stopped_after < RECEIVE_WAIT + 5, f"SIGTERM took {stopped_after:.1f}s"


def _peek_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a (small) queue, made visible again at once."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=10,
                                   WaitTimeSeconds=1)["Messages"]  # fmt: skip
    sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
        for i, m in enumerate(messages)
    ])  # fmt: skip
    return messages


def _redrive(main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["dlq", "redrive", "crm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    return {key: report[key] for key in ("to_buffer_queue", "to_queue", "failed")}


def _duplicates(log: Path) -> set[str]:
    return {
        trace.split("/", 1)[0]
        for line in log_lines(log)
        for trace in (line.get("events") or {}).get("duplicate", [])
    }
