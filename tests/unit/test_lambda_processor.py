import json

import pytest

from datasync.contract import DestinationRecord
from datasync.core.transforms import to_crm, to_marketing
from lambdas.config import LambdaConfig
from lambdas.handler import build_processor
from lambdas.processor import TransformProcessor
from tests.conftest import load_event
from tests.unit.conftest import drain


def sqs_record(body, message_id="m1", receive_count=1):
    return {
        "messageId": message_id,
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {},
    }


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


def test_batch_is_transformed_and_sent_with_trace_attributes(processor, sqs, queues):
    records = [
        sqs_record(eventbridge(name), f"m{i}")
        for i, name in enumerate(["user_created", "user_updated", "user_deleted"])
    ]
    assert processor.handle_sqs_batch(records) == {"batchItemFailures": []}
    sent = drain(sqs, queues["queue"])
    parsed = sorted((DestinationRecord.from_json(m["Body"]) for m in sent), key=lambda r: r.version)
    assert [r.op for r in parsed] == ["upsert", "upsert", "delete"]
    attributes = {m["MessageAttributes"]["event_id"]["StringValue"] for m in sent}
    assert attributes == {str(r.event_id) for r in parsed}
    assert all(
        m["MessageAttributes"]["correlation_id"]["StringValue"].startswith("req-") for m in sent
    )
    assert drain(sqs, queues["dlq"]) == []


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
    assert len(drain(sqs, queues["queue"])) == 1


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"no": "detail"}), json.dumps({"detail": {"event_type": "Nope"}})],
)
def test_non_events_are_poison(processor, sqs, queues, body):
    assert processor.handle_sqs_batch([sqs_record(body)]) == {"batchItemFailures": []}
    assert len(drain(sqs, queues["dlq"])) == 1


class RefusingSqs:
    """Delegates to moto but refuses every send to the destination queue."""

    def __init__(self, sqs, refused_url):
        self.sqs, self.refused_url = sqs, refused_url

    def send_message_batch(self, QueueUrl, Entries):
        if QueueUrl == self.refused_url:
            return {
                "Successful": [],
                "Failed": [
                    {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in Entries
                ],
            }
        return self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


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
    assert line.records == 2 and line.sent == 2 and line.retry == 0
    assert [e.split("/")[1] for e in line.events] == ["req-7a1f0c", "req-91bd2e"]
    assert "ada" not in caplog.text.lower()
