import json

import pytest
from botocore.exceptions import ClientError

from datasync.contract import RecordPack, parse_event
from datasync.contract.records import PACK_ENVELOPE_BYTES
from datasync.core.transforms import to_crm, to_marketing
from lambdas.config import LambdaConfig
from lambdas.handler import build_processor
from lambdas.processor import TransformFailed, TransformProcessor
from tests import crafted
from tests.conftest import FIXTURES, load_event
from tests.unit.conftest import drain

# An SQS record as the event source mapping delivers it (AWS's documented shape).
BUFFER_RECORD = json.loads((FIXTURES / "messages" / "buffer_record.json").read_text())


def sqs_record(body, message_id="m1", receive_count=1, **fields):
    return {
        **BUFFER_RECORD,
        "messageId": message_id,
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            **BUFFER_RECORD["attributes"],
            "ApproximateReceiveCount": str(receive_count),
        },
        **fields,
    }


def unpacked(messages):
    """The records of destination queue messages (packs), in order."""
    return [r for m in messages for r in RecordPack.model_validate_json(m["Body"]).records]


def sent_records(sqs, url):
    """The records in the destination queue, unpacked (the queue is emptied)."""
    return unpacked(drain(sqs, url))


def eventbridge(event_name):
    envelope = load_event("eventbridge_user_created")
    envelope["detail"] = load_event(event_name)
    envelope["detail-type"] = envelope["detail"]["event_type"]
    return envelope


@pytest.fixture
def processor(sqs, queues):
    return TransformProcessor(
        "crm", to_crm, sqs, queues["queue"], queues["dlq"], max_receive_count=3
    )


def test_a_batch_is_sent_as_one_pack_that_names_every_record_in_its_attributes(
    processor, sqs, queues
):
    names = ["user_created", "user_updated", "user_deleted"]
    records = [sqs_record(eventbridge(name), f"m{i}") for i, name in enumerate(names)]
    assert processor.handle_sqs_batch(records) == {"batchItemFailures": []}
    [message] = drain(sqs, queues["queue"])
    pack = RecordPack.model_validate_json(message["Body"])
    assert (pack.destination, [r.op for r in pack.records]) == (
        "crm",
        ["upsert", "upsert", "delete"],
    )
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["record_count"] == "3"
    assert attributes["event_ids"] == ",".join(str(r.event_id) for r in pack.records)
    assert attributes["correlation_ids"] == "req-7a1f0c,req-91bd2e,req-d41e90"
    assert drain(sqs, queues["dlq"]) == []


def test_a_batch_too_big_for_one_message_is_split_into_packs_in_order(
    processor, sqs, queues, monkeypatch
):
    events = [eventbridge("user_created") for _ in range(5)]
    for i, event in enumerate(events):
        event["detail"]["event_id"] = f"00000000-0000-4000-8000-00000000000{i}"
    record_bytes = len(to_crm(parse_event(events[0]["detail"]))[0].model_dump_json())
    limit = PACK_ENVELOPE_BYTES + 2 * (record_bytes + 1)  # room for two records
    monkeypatch.setattr("datasync.contract.records.MAX_PACK_BYTES", limit)
    assert processor.handle_sqs_batch([sqs_record(e, f"m{i}") for i, e in enumerate(events)]) == {
        "batchItemFailures": []
    }
    messages = sorted(drain(sqs, queues["queue"]), key=lambda m: unpacked([m])[0].event_id)
    assert [len(RecordPack.model_validate_json(m["Body"]).records) for m in messages] == [2, 2, 1]
    assert all(len(m["Body"]) <= limit for m in messages)
    assert [str(r.event_id) for r in unpacked(messages)] == [
        e["detail"]["event_id"] for e in events
    ]


def test_poison_event_goes_to_the_dlq_with_a_reason_and_is_not_retried(processor, sqs, queues):
    poison = eventbridge("poison_bad_email")
    result = processor.handle_sqs_batch(
        [sqs_record(poison, "bad"), sqs_record(eventbridge("user_created"), "good")]
    )
    assert result == {"batchItemFailures": []}
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason.startswith("invalid event: UserCreated.data.email")
    assert dead["MessageAttributes"]["correlation_id"]["StringValue"] == "req-poison"
    assert "not-an-email" not in reason  # no personal data in reasons
    assert dead["MessageAttributes"]["failure_stage"]["StringValue"] == "transform"
    assert len(sent_records(sqs, queues["queue"])) == 1


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"no": "detail"}), json.dumps({"detail": {"event_type": "Nope"}})],
)
def test_non_events_are_poison(processor, sqs, queues, body):
    assert processor.handle_sqs_batch([sqs_record(body)]) == {"batchItemFailures": []}
    assert len(drain(sqs, queues["dlq"])) == 1


class RefusingSqs:
    """Delegates to moto but refuses every send to the destination queue (entry by entry, or
    the whole call as when the queue is gone), and records the visibility changes it passes on."""

    def __init__(self, sqs, refused_url, *, queue_gone=False):
        self.sqs, self.refused_url, self.queue_gone = sqs, refused_url, queue_gone
        self.visibility_changes = []

    def send_message_batch(self, QueueUrl, Entries):
        if QueueUrl == self.refused_url and self.queue_gone:
            error = {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}
            raise ClientError({"Error": error}, "SendMessageBatch")
        if QueueUrl == self.refused_url:
            return {
                "Successful": [],
                "Failed": [
                    {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in Entries
                ],
            }
        return self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    def change_message_visibility_batch(self, QueueUrl, Entries):
        self.visibility_changes.append((QueueUrl, Entries))
        return self.sqs.change_message_visibility_batch(QueueUrl=QueueUrl, Entries=Entries)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


class RefusingPacksWith(RefusingSqs):
    """Refuses, every time, the destination-queue entries whose body holds ``marker``."""

    def __init__(self, sqs, refused_url, marker):
        super().__init__(sqs, refused_url)
        self.marker = marker

    def send_message_batch(self, QueueUrl, Entries):
        if QueueUrl != self.refused_url:
            return self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        refused = [e for e in Entries if self.marker in e["MessageBody"]]
        accepted = [e for e in Entries if e not in refused]
        response = self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=accepted)
        failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in refused]
        return {**response, "Failed": failed}


def test_a_pack_that_is_refused_fails_only_the_records_it_carried(sqs, queues, monkeypatch):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    events = [eventbridge("user_created") for _ in range(4)]
    for i, event in enumerate(events):
        event["detail"]["event_id"] = f"00000000-0000-4000-8000-00000000000{i}"
    record_bytes = len(to_crm(parse_event(events[0]["detail"]))[0].model_dump_json())
    monkeypatch.setattr(
        "datasync.contract.records.MAX_PACK_BYTES", PACK_ENVELOPE_BYTES + 2 * (record_bytes + 1)
    )
    refusing = RefusingPacksWith(sqs, queues["queue"], events[2]["detail"]["event_id"])
    processor = TransformProcessor("crm", to_crm, refusing, queues["queue"], queues["dlq"], 3)
    result = processor.handle_sqs_batch([sqs_record(e, f"m{i}") for i, e in enumerate(events)])
    # Two packs (m0+m1, m2+m3); the second was refused: its two records come back.
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    assert sorted(str(r.event_id) for r in sent_records(sqs, queues["queue"])) == [
        e["detail"]["event_id"] for e in events[:2]
    ]


def test_transient_send_failure_is_reported_for_retry(sqs, queues, monkeypatch):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    processor = TransformProcessor(
        "crm", to_crm, RefusingSqs(sqs, queues["queue"]), queues["queue"], queues["dlq"], 3
    )
    result = processor.handle_sqs_batch(
        [sqs_record(eventbridge("user_created"), "m1", receive_count=1)]
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert drain(sqs, queues["dlq"]) == []


def test_on_the_last_attempt_a_failing_record_is_dead_lettered_with_the_reason(
    sqs, queues, monkeypatch
):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    processor = TransformProcessor(
        "crm", to_crm, RefusingSqs(sqs, queues["queue"]), queues["queue"], queues["dlq"], 3
    )
    result = processor.handle_sqs_batch(
        [sqs_record(eventbridge("user_created"), "m1", receive_count=3)]
    )
    assert result == {"batchItemFailures": []}
    [dead] = drain(sqs, queues["dlq"])
    assert "destination queue" in dead["MessageAttributes"]["failure_reason"]["StringValue"]


def test_marketing_sends_nothing_for_irrelevant_updates(sqs, queues):
    processor = TransformProcessor(
        "marketing", to_marketing, sqs, queues["queue"], queues["dlq"], 3
    )
    update = eventbridge("user_updated")
    update["detail"]["data"] = {
        "user_id": update["detail"]["data"]["user_id"],
        "attributes": {"a": "b"},
    }
    assert processor.handle_sqs_batch([sqs_record(update)]) == {"batchItemFailures": []}
    assert drain(sqs, queues["queue"]) == []


def test_async_invocation_poison_is_dead_lettered_and_transient_failure_raises(
    sqs, queues, monkeypatch
):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    processor = TransformProcessor("crm", to_crm, sqs, queues["queue"], queues["dlq"], 3)
    assert processor.handle_eventbridge_event(eventbridge("poison_bad_email")) == {
        "status": "dead-lettered"
    }
    assert processor.handle_eventbridge_event(eventbridge("user_created"))["status"] == "sent"
    refusing = TransformProcessor(
        "crm", to_crm, RefusingSqs(sqs, queues["queue"]), queues["queue"], queues["dlq"], 3
    )
    with pytest.raises(Exception, match="not accepted"):
        refusing.handle_eventbridge_event(eventbridge("user_created"))


def test_config_names_what_is_missing():
    with pytest.raises(RuntimeError, match="DATASYNC_DESTINATION_QUEUE_URL"):
        LambdaConfig.from_env({"DATASYNC_DESTINATION": "crm"})


def test_config_is_the_one_place_the_lambda_reads_its_environment():
    config = LambdaConfig.from_env(
        {
            "DATASYNC_DESTINATION": "crm",
            "DATASYNC_DESTINATION_QUEUE_URL": "https://sqs/1/q",
            "DATASYNC_DEAD_LETTER_QUEUE_URL": "https://sqs/1/q-dlq",
            "DATASYNC_BUFFER_QUEUE_URL": "https://sqs/1/q-buffer",
            "DATASYNC_MAX_RECEIVE_COUNT": "7",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert (config.aws_region, config.max_receive_count) == ("eu-west-1", 7)
    assert config.buffer_queue_url == "https://sqs/1/q-buffer"
    processor = build_processor(config, sqs=object())
    assert processor.buffer_queue_url == config.buffer_queue_url


def test_handler_builds_the_analytics_processor_with_its_key(sqs, queues):
    config = LambdaConfig.from_env(
        {
            "DATASYNC_DESTINATION": "analytics",
            "DATASYNC_DESTINATION_QUEUE_URL": queues["queue"],
            "DATASYNC_DEAD_LETTER_QUEUE_URL": queues["dlq"],
            "DATASYNC_ANALYTICS_HASH_KEY": "0123456789abcdef0123",
        }
    )
    processor = build_processor(config, sqs=sqs)
    processor.handle_sqs_batch([sqs_record(eventbridge("user_created"))])
    [message] = drain(sqs, queues["queue"])
    assert "ada" not in message["Body"].lower()


def test_one_log_line_per_batch_names_every_event_and_correlation_id(processor, caplog):
    caplog.set_level("INFO", logger="datasync.lambda")
    names = ["user_created", "user_updated"]
    processor.handle_sqs_batch([sqs_record(eventbridge(n), f"m{i}") for i, n in enumerate(names)])
    [line] = [r for r in caplog.records if r.getMessage() == "batch transformed"]
    assert (line.records, line.sent, line.packs, line.retry) == (2, 2, 1, 0)
    assert list(line.events) == ["sent"]
    assert [e.split("/")[1] for e in line.events["sent"]] == ["req-7a1f0c", "req-91bd2e"]
    assert "ada" not in caplog.text.lower()


# -- one bad record fails alone --------------------------------------------------------------
def failing_for(correlation_id, error=lambda event: KeyError(event.data.email)):
    """to_crm, except that it raises for one event, quoting that event's email as bugs do."""

    def transform(event):
        if event.correlation_id == correlation_id:
            raise error(event)
        return to_crm(event)

    return transform


def three_events():
    created, updated, deleted = (
        eventbridge(n) for n in ("user_created", "user_updated", "user_deleted")
    )
    created["detail"]["correlation_id"] = "req-bad"
    return created, updated, deleted


def test_an_error_in_one_transform_fails_that_record_alone(sqs, queues):
    buggy = TransformProcessor(
        "crm", failing_for("req-bad"), sqs, queues["queue"], queues["dlq"], 3
    )
    created, updated, deleted = three_events()
    result = buggy.handle_sqs_batch(
        [sqs_record(created, "bad"), sqs_record(updated, "ok1"), sqs_record(deleted, "ok2")]
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    sent = sent_records(sqs, queues["queue"])
    assert sorted(r.correlation_id for r in sent) == ["req-91bd2e", "req-d41e90"]
    assert drain(sqs, queues["dlq"]) == []  # not its last attempt: retried, not dead-lettered


def test_on_its_last_attempt_a_record_whose_transform_fails_is_dead_lettered_with_the_reason(
    sqs, queues, caplog
):
    buggy = TransformProcessor(
        "crm", failing_for("req-bad"), sqs, queues["queue"], queues["dlq"], 3
    )
    created, updated, _ = three_events()
    result = buggy.handle_sqs_batch(
        [sqs_record(created, "bad", receive_count=3), sqs_record(updated, "ok", receive_count=3)]
    )
    assert result == {"batchItemFailures": []}  # dead-lettered, so the mapping deletes it
    [dead] = drain(sqs, queues["dlq"])
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["failure_reason"] == "transform failed: KeyError: '<redacted>'"
    assert attributes["failure_stage"] == "transform"
    assert attributes["failure_receive_count"] == "3"
    assert attributes["correlation_id"] == "req-bad"
    assert json.loads(dead["Body"]) == created  # the event itself, to redrive after a fix
    assert len(sent_records(sqs, queues["queue"])) == 1
    assert "ada.lovelace" not in caplog.text, "no personal data in logs"


def test_failed_records_come_back_after_a_backoff_not_the_visibility_timeout(sqs, queues):
    buffer = sqs.create_queue(QueueName="datasync-crm-buffer")["QueueUrl"]
    sqs.send_message(QueueUrl=buffer, MessageBody=json.dumps(eventbridge("user_created")))
    [message] = sqs.receive_message(QueueUrl=buffer, VisibilityTimeout=900)["Messages"]
    refusing = RefusingSqs(sqs, queues["queue"])
    processor = TransformProcessor("crm", to_crm, refusing, queues["queue"], queues["dlq"], 3)
    record = sqs_record(
        message["Body"],
        message["MessageId"],
        receive_count=2,
        receiptHandle=message["ReceiptHandle"],
        eventSourceARN="arn:aws:sqs:us-east-1:123456789012:datasync-crm-buffer",
    )
    assert processor.handle_sqs_batch([record])["batchItemFailures"]
    [(url, [entry])] = refusing.visibility_changes
    assert url == buffer  # derived from the record's ARN and the destination queue's URL
    assert entry["ReceiptHandle"] == message["ReceiptHandle"]
    assert 2 <= entry["VisibilityTimeout"] <= 4  # second delivery: about 4 s, with jitter


def test_a_destination_queue_that_is_gone_fails_the_records_not_the_invocation(
    sqs, queues, monkeypatch
):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    gone = RefusingSqs(sqs, queues["queue"], queue_gone=True)
    processor = TransformProcessor("crm", to_crm, gone, queues["queue"], queues["dlq"], 3)
    created, updated, _ = three_events()
    result = processor.handle_sqs_batch(
        [
            sqs_record(created, "first", receive_count=1),
            sqs_record(updated, "last", receive_count=3),
        ]
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "first"}]}
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason == (
        "not accepted by the destination queue: "
        "SendMessageBatch failed: AWS.SimpleQueueService.NonExistentQueue"
    )


def test_async_invocation_failure_raises_a_reason_without_personal_data(sqs, queues):
    buggy = TransformProcessor(
        "crm", failing_for("req-7a1f0c"), sqs, queues["queue"], queues["dlq"], 3
    )
    with pytest.raises(TransformFailed) as info:
        buggy.handle_eventbridge_event(eventbridge("user_created"))
    assert str(info.value) == "transform failed: KeyError: '<redacted>'"
    assert drain(sqs, queues["queue"]) == []


# -- crafted messages: each alone is dead-lettered, the batch never fails -------------------------
TAG = "crafted-unit"


@pytest.mark.parametrize("kind", list(crafted.event_bodies(TAG)))
def test_a_crafted_body_alone_is_dead_lettered_and_the_rest_of_its_batch_sent(
    kind, processor, sqs, queues
):
    body = crafted.event_bodies(TAG)[kind]
    batch = [sqs_record(body, "crafted"), sqs_record(eventbridge("user_created"), "good")]
    assert processor.handle_sqs_batch(batch) == {"batchItemFailures": []}
    [dead] = drain(sqs, queues["dlq"])
    assert dead["Body"] == body
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason.startswith(("invalid event: ", "not an EventBridge event")), reason
    assert TAG not in reason, "the reason quotes no input"
    assert len(sent_records(sqs, queues["queue"])) == 1


def test_an_event_from_the_future_is_dead_lettered_with_that_reason(processor, sqs, queues):
    body = crafted.event_bodies(TAG)["occurred far in the future"]
    assert processor.handle_sqs_batch([sqs_record(body)]) == {"batchItemFailures": []}
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason == (
        "invalid event: UserCreated.occurred_at: Value error, "
        "more than 5 minutes ahead of this host's clock"
    )


def fails_unexpectedly_for(marker, parse):
    """A parse with a bug that bites one record (its message quotes the input, as errors do)."""

    def parse_or_fail(body):
        if marker in body:
            raise RuntimeError(f"bug while reading {body}")
        return parse(body)

    return parse_or_fail


def test_an_unexpected_error_fails_that_record_alone_then_dead_letters_it(
    processor, sqs, queues, monkeypatch, caplog
):
    from lambdas import processor as module

    monkeypatch.setattr(
        module,
        "event_from_eventbridge",
        fails_unexpectedly_for("Ada", module.event_from_eventbridge),
    )
    ada, other = eventbridge("user_created"), eventbridge("user_deleted")
    assert processor.handle_sqs_batch([sqs_record(ada, "ada"), sqs_record(other, "other")]) == {
        "batchItemFailures": [{"itemIdentifier": "ada"}]
    }
    assert len(sent_records(sqs, queues["queue"])) == 1, "the other record was sent"
    assert "record failed" in caplog.text and "Ada" not in caplog.text, "logged, without PII"
    # On its last delivery it goes to the DLQ with the reason, and the batch still succeeds.
    assert processor.handle_sqs_batch([sqs_record(ada, "ada", receive_count=3)]) == {
        "batchItemFailures": []
    }
    [dead] = drain(sqs, queues["dlq"])
    reason = dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert reason.startswith("unexpected error: RuntimeError in parse_or_fail"), reason
    assert "Ada" not in reason
