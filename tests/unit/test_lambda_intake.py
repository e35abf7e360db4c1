"""The intake function: every live event shaped for every destination in one invocation; what
the fast path cannot finish goes to that destination's own function, and only there."""

import json

import pytest

from datasync.contract import RecordPack
from datasync.core.transforms import to_crm, to_marketing
from lambdas.config import IntakeConfig
from lambdas.handler import build_intake
from lambdas.intake import Route
from lambdas.processor import TransformProcessor
from tests import crafted
from tests.unit.conftest import drain
from tests.unit.test_lambda_processor import RefusingSqs, eventbridge, sqs_record

DESTINATIONS = ("analytics", "crm", "marketing")
HASH_KEY = "k" * 32


@pytest.fixture
def routes(sqs):
    urls = {}
    for destination in DESTINATIONS:
        urls[destination] = {
            "queue_url": sqs.create_queue(QueueName=f"{destination}")["QueueUrl"],
            "buffer_queue_url": sqs.create_queue(QueueName=f"{destination}-buffer")["QueueUrl"],
        }
    return urls


def intake(sqs, routes, **overrides):
    env = {"DATASYNC_INTAKE_ROUTES": json.dumps(routes), "DATASYNC_ANALYTICS_HASH_KEY": HASH_KEY}
    processor = build_intake(IntakeConfig.from_env(env), sqs=sqs)
    processor.routes = [
        Route(
            r.destination,
            overrides.get(r.destination, r.transform),
            r.queue_url,
            r.buffer_queue_url,
        )
        for r in processor.routes
    ]
    return processor


def packs(sqs, url):
    return [RecordPack.model_validate_json(m["Body"]) for m in drain(sqs, url)]


def bodies(sqs, url):
    return [json.loads(m["Body"]) for m in drain(sqs, url)]


def events(*names):
    batch = [eventbridge(name) for name in names]
    for i, event in enumerate(batch):
        event["detail"]["event_id"] = f"00000000-0000-4000-8000-00000000000{i}"
        event["detail"]["correlation_id"] = f"req-{i}"
    return batch


def test_every_destination_gets_one_pack_of_the_whole_batch(sqs, routes):
    batch = events("user_created", "user_updated", "user_deleted")
    records = [sqs_record(e, f"m{i}") for i, e in enumerate(batch)]
    assert intake(sqs, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    for destination in DESTINATIONS:
        [pack] = packs(sqs, routes[destination]["queue_url"])
        assert pack.destination == destination
        assert [r.correlation_id for r in pack.records] == ["req-0", "req-1", "req-2"]
        assert drain(sqs, routes[destination]["buffer_queue_url"]) == []


def test_the_analytics_records_are_hashed_with_the_configured_key(sqs, routes):
    intake(sqs, routes).handle_sqs_batch([sqs_record(eventbridge("user_created"))])
    [pack] = packs(sqs, routes["analytics"]["queue_url"])
    assert "ada" not in pack.model_dump_json().lower()


def test_poison_is_handed_as_it_came_to_every_destinations_function(sqs, routes):
    [good], poison = events("user_created"), eventbridge("poison_bad_email")
    records = [sqs_record(good, "good"), sqs_record(poison, "poison")]
    assert intake(sqs, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    for destination in DESTINATIONS:
        assert bodies(sqs, routes[destination]["buffer_queue_url"]) == [poison]
        [pack] = packs(sqs, routes[destination]["queue_url"])
        assert [r.correlation_id for r in pack.records] == ["req-0"]


def fails_for(correlation_id, transform):
    def transform_or_fail(event):
        if event.correlation_id == correlation_id:
            raise KeyError(event.data.email)
        return transform(event)

    return transform_or_fail


def test_a_transform_that_fails_hands_the_record_to_that_destination_alone(sqs, routes):
    batch = events("user_created", "user_created")
    records = [sqs_record(e, f"m{i}") for i, e in enumerate(batch)]
    processor = intake(sqs, routes, marketing=fails_for("req-1", to_marketing))
    assert processor.handle_sqs_batch(records) == {"batchItemFailures": []}
    assert bodies(sqs, routes["marketing"]["buffer_queue_url"]) == [batch[1]]
    [pack] = packs(sqs, routes["marketing"]["queue_url"])
    assert [r.correlation_id for r in pack.records] == ["req-0"]
    for destination in ("analytics", "crm"):
        [pack] = packs(sqs, routes[destination]["queue_url"])
        assert [r.correlation_id for r in pack.records] == ["req-0", "req-1"]
        assert drain(sqs, routes[destination]["buffer_queue_url"]) == []


def test_a_destination_queue_that_refuses_sends_its_records_to_its_own_buffer(
    sqs, routes, monkeypatch
):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    batch = events("user_created", "user_updated")
    records = [sqs_record(e, f"m{i}") for i, e in enumerate(batch)]
    refusing = RefusingSqs(sqs, routes["crm"]["queue_url"], queue_gone=True)
    assert intake(refusing, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    handed_over = bodies(sqs, routes["crm"]["buffer_queue_url"])
    assert sorted(handed_over, key=lambda e: e["detail"]["event_id"]) == batch
    for destination in ("analytics", "marketing"):
        assert len(packs(sqs, routes[destination]["queue_url"])[0].records) == 2


def test_only_a_record_that_cannot_be_handed_over_comes_back_from_the_intake(
    sqs, routes, monkeypatch
):
    monkeypatch.setattr("datasync.core.queues.time.sleep", lambda s: None)
    batch = events("user_created", "user_created")
    records = [sqs_record(e, f"m{i}") for i, e in enumerate(batch)]
    refusing = RefusingSqs(sqs, routes["crm"]["buffer_queue_url"])
    processor = intake(refusing, routes, crm=fails_for("req-1", to_crm))
    assert processor.handle_sqs_batch(records) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_what_is_handed_over_is_what_the_destinations_function_takes(sqs, routes, queues):
    batch = events("user_created")
    intake(sqs, routes, crm=fails_for("req-0", to_crm)).handle_sqs_batch(
        [sqs_record(batch[0], "m0")]
    )
    [handed_over] = drain(sqs, routes["crm"]["buffer_queue_url"])
    crm = TransformProcessor("crm", to_crm, sqs, queues["queue"], queues["dlq"], 3)
    assert crm.handle_sqs_batch([sqs_record(handed_over["Body"])]) == {"batchItemFailures": []}
    [pack] = packs(sqs, queues["queue"])
    assert [r.correlation_id for r in pack.records] == ["req-0"]


def test_one_log_line_per_batch_without_personal_data(sqs, routes, caplog):
    caplog.set_level("INFO", logger="datasync.lambda")
    batch = events("user_created", "user_updated")
    processor = intake(sqs, routes, crm=fails_for("req-1", to_crm))
    processor.handle_sqs_batch([sqs_record(e, f"m{i}") for i, e in enumerate(batch)])
    [line] = [r for r in caplog.records if r.getMessage() == "batch shaped"]
    assert (line.records, line.packs, line.handed_over, line.retry) == (2, 3, {"crm": 1}, 0)
    ids = [f"00000000-0000-4000-8000-00000000000{i}/req-{i}" for i in range(2)]
    assert line.events == {"received": ids, "handed_over": {"crm": [ids[1]]}}
    assert "ada" not in caplog.text.lower()


@pytest.mark.parametrize(
    "env",
    [{}, {"DATASYNC_INTAKE_ROUTES": "not json"}, {"DATASYNC_INTAKE_ROUTES": '{"crm": {}}'}],
)
def test_a_misconfigured_intake_says_what_it_needs(env):
    with pytest.raises(RuntimeError, match="DATASYNC_INTAKE_ROUTES must be JSON"):
        IntakeConfig.from_env(env)


def test_the_lambdas_sqs_client_leaves_retrying_to_send_batch():
    # Stacked on send_batch's three tries, the SDK's own retries kept an invocation retrying a
    # vanished endpoint for minutes (a local worker outlived its emulator by two).
    from lambdas.handler import lambda_sqs_client

    assert lambda_sqs_client("us-east-1").meta.config.retries["total_max_attempts"] == 1


# -- crafted messages: each alone leaves the fast path, the batch never fails ---------------------
TAG = "crafted-unit"


@pytest.mark.parametrize("kind", list(crafted.event_bodies(TAG)))
def test_a_crafted_body_alone_goes_to_every_destinations_function(kind, sqs, routes):
    body = crafted.event_bodies(TAG)[kind]
    [good] = events("user_created")
    records = [sqs_record(body, "crafted"), sqs_record(good, "good")]
    assert intake(sqs, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    for destination in DESTINATIONS:
        assert [m["Body"] for m in drain(sqs, routes[destination]["buffer_queue_url"])] == [body]
        [pack] = packs(sqs, routes[destination]["queue_url"])
        assert [r.correlation_id for r in pack.records] == ["req-0"]


def test_large_crafted_bodies_are_handed_over_in_calls_sqs_accepts(sqs, routes):
    bodies = [crafted.garbage(f"{TAG}-{i}", size=200 * 1024) for i in range(3)]
    sizes = []
    real_send = sqs.send_message_batch

    def send_message_batch(QueueUrl, Entries):
        sizes.append(sum(len(e["MessageBody"].encode()) for e in Entries))
        return real_send(QueueUrl=QueueUrl, Entries=Entries)

    sqs.send_message_batch = send_message_batch
    records = [sqs_record(body, f"m{i}") for i, body in enumerate(bodies)]
    assert intake(sqs, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    assert max(sizes) <= 256 * 1024, sizes
    for destination in DESTINATIONS:
        handed = [m["Body"] for m in drain(sqs, routes[destination]["buffer_queue_url"])]
        assert sorted(handed) == sorted(bodies)


def test_an_unexpected_error_with_one_record_hands_it_alone_over(sqs, routes, monkeypatch, caplog):
    from lambdas import intake as module
    from tests.unit.test_lambda_processor import fails_unexpectedly_for

    monkeypatch.setattr(
        module,
        "event_from_eventbridge",
        fails_unexpectedly_for("req-1", module.event_from_eventbridge),
    )
    batch = events("user_created", "user_created")
    records = [sqs_record(e, f"m{i}") for i, e in enumerate(batch)]
    assert intake(sqs, routes).handle_sqs_batch(records) == {"batchItemFailures": []}
    assert "record failed" in caplog.text and "Ada" not in caplog.text, "logged, without PII"
    for destination in DESTINATIONS:
        assert bodies(sqs, routes[destination]["buffer_queue_url"]) == [batch[1]]
        [pack] = packs(sqs, routes[destination]["queue_url"])
        assert [r.correlation_id for r in pack.records] == ["req-0"]
