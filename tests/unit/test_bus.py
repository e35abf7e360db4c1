import json

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from datasync.contract import parse_event
from datasync.core.bus import EventPublisher, PublishError
from tests.conftest import load_event

EVENT = parse_event(load_event("user_created"))


class ScriptedEvents:
    """An EventBridge client that answers from a script of responses/exceptions."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def put_events(self, Entries):
        self.calls.append(Entries)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


OK = {"FailedEntryCount": 0, "Entries": [{"EventId": "eb-1"}]}
THROTTLED = {
    "FailedEntryCount": 1,
    "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}],
}


def publisher(client, **kwargs):
    return EventPublisher(client, "bus", sleep=lambda s: None, **kwargs)


def test_publishes_one_entry_with_the_contract_json():
    client = ScriptedEvents(OK)
    assert publisher(client).publish(EVENT) == "eb-1"
    [[entry]] = client.calls
    assert entry["Source"] == "datasync.api" and entry["DetailType"] == "UserCreated"
    assert entry["EventBusName"] == "bus"
    assert parse_event(entry["Detail"]) == EVENT


def test_a_200_with_a_failed_entry_is_retried_then_succeeds():
    client = ScriptedEvents(THROTTLED, THROTTLED, OK)
    assert publisher(client).publish(EVENT) == "eb-1"
    assert len(client.calls) == 3


def test_a_non_retryable_entry_error_fails_at_once():
    client = ScriptedEvents(
        {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDeniedException"}]}
    )
    with pytest.raises(PublishError) as info:
        publisher(client).publish(EVENT)
    assert info.value.code == "AccessDeniedException" and len(client.calls) == 1


def test_gives_up_when_the_time_budget_is_spent():
    clock = iter(range(100)).__next__  # every look at the clock: one more second
    client = ScriptedEvents(*[THROTTLED] * 10)
    with pytest.raises(PublishError, match="after"):
        EventPublisher(client, "bus", budget_seconds=3, sleep=lambda s: None, clock=clock).publish(
            EVENT
        )
    assert 1 <= len(client.calls) < 10


def test_connection_errors_and_throttling_exceptions_are_retried():
    throttle = ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "PutEvents")
    client = ScriptedEvents(EndpointConnectionError(endpoint_url="http://x"), throttle, OK)
    assert publisher(client).publish(EVENT) == "eb-1"


def test_against_moto_an_event_reaches_a_rule_target_queue(aws):
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name="bus")
    queue = sqs.create_queue(QueueName="target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="r", EventBusName="bus", EventPattern=json.dumps({"source": ["datasync.api"]})
    )
    events.put_targets(Rule="r", EventBusName="bus", Targets=[{"Id": "q", "Arn": arn}])

    real = EventPublisher(events, "bus")
    real.publish(EVENT)
    assert real.is_reachable()
    [message] = sqs.receive_message(QueueUrl=queue).get("Messages", [])
    assert parse_event(json.loads(message["Body"])["detail"]) == EVENT
    assert not EventPublisher(events, "no-such-bus").is_reachable()
