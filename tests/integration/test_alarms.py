"""What the session's `terraform apply` created for operators, read back from MiniStack (no apply
of its own): every destination's alarms with their metric, dimensions and threshold, notifying
the alarm topic on ALARM and on OK; the topic, encrypted with its own key and publishable only by
this account's alarms; and the dashboard, one row per destination.

Then one real alarm is set to ALARM and back: both notifications reach a queue subscribed to the
topic (MiniStack runs an alarm's SNS actions on SetAlarmState; it does not evaluate AWS metrics).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from datasync.contract import DESTINATIONS
from tests.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.integration

# alarm -> namespace, metric, statistic, and which of the destination's resources it watches.
ALARMS = {
    "dlq-not-empty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", "dlq"),
    "oldest-message": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "queue"),
    "buffer-oldest-message": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "buffer"),
    "transform-errors": ("AWS/Lambda", "Errors", "Sum", "function"),
    "transform-throttles": ("AWS/Lambda", "Throttles", "Sum", "function"),
    "rule-delivery-failed": ("AWS/Events", "FailedInvocations", "Sum", "rule"),
    "rule-dead-lettered": ("AWS/Events", "InvocationsSentToDlq", "Sum", "rule"),
    "rule-events-lost": ("AWS/Events", "InvocationsFailedToBeSentToDlq", "Sum", "rule"),
}


def last_segment(url_or_arn: str) -> str:
    return url_or_arn.rsplit("/", 1)[-1]


def watched_dimensions(outputs: dict[str, Any], destination: str) -> dict[str, dict[str, str]]:
    """The dimensions each kind of alarm must have for ``destination``, from the outputs."""
    queue = {
        "dlq": last_segment(outputs["dlq_urls"][destination]),
        "queue": last_segment(outputs["queue_urls"][destination]),
        "buffer": last_segment(outputs["buffer_queue_urls"][destination]),
    }
    return {
        **{kind: {"QueueName": name} for kind, name in queue.items()},
        "function": {"FunctionName": outputs["lambda_function_names"][destination]},
        "rule": {
            "EventBusName": outputs["event_bus_name"],
            "RuleName": last_segment(outputs["rule_arns"][destination]),
        },
    }


# The intake's alarms -> the same, on the intake's own queue, DLQ, function and rule.
INTAKE_ALARMS = {
    "dlq-not-empty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", "dlq"),
    "oldest-message": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "queue"),
    "function-errors": ("AWS/Lambda", "Errors", "Sum", "function"),
    "function-throttles": ("AWS/Lambda", "Throttles", "Sum", "function"),
    "rule-delivery-failed": ("AWS/Events", "FailedInvocations", "Sum", "rule"),
    "rule-events-lost": ("AWS/Events", "InvocationsFailedToBeSentToDlq", "Sum", "rule"),
}


def intake_dimensions(outputs: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        "dlq": {"QueueName": last_segment(outputs["intake_dlq_url"])},
        "queue": {"QueueName": last_segment(outputs["intake_queue_url"])},
        "function": {"FunctionName": outputs["intake_function_name"]},
        "rule": {
            "EventBusName": outputs["event_bus_name"],
            "RuleName": last_segment(outputs["intake_rule_arn"]),
        },
    }


def deployed_alarms(pipeline: Pipeline, outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [name for by_kind in outputs["alarm_names"].values() for name in by_kind.values()]
    found = pipeline.aws("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {alarm["AlarmName"]: alarm for alarm in found}


def test_every_destination_has_its_alarms_and_they_notify_the_topic(stack, pipeline):
    outputs = stack.outputs
    topic = outputs["alarm_topic_arn"]
    assert topic and set(outputs["alarm_names"]) == {*DESTINATIONS, "intake"}
    alarms = deployed_alarms(pipeline, outputs)
    assert len(alarms) == len(DESTINATIONS) * len(ALARMS) + len(INTAKE_ALARMS), sorted(alarms)
    expected = {d: (watched_dimensions(outputs, d), ALARMS) for d in DESTINATIONS}
    expected["intake"] = (intake_dimensions(outputs), INTAKE_ALARMS)
    for destination, (dimensions, kinds) in expected.items():
        for kind, (namespace, metric, statistic, watches) in kinds.items():
            alarm = alarms[outputs["alarm_names"][destination][kind]]
            deployed = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
                namespace, metric, statistic,
            ), alarm  # fmt: skip
            assert deployed == dimensions[watches], (kind, destination, deployed)
            assert alarm["AlarmActions"] == alarm["OKActions"] == [topic], alarm
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
            assert alarm["TreatMissingData"] == "notBreaching"


def test_the_alarm_topic_is_encrypted_and_only_this_accounts_alarms_may_publish(stack, pipeline):
    outputs = stack.outputs
    account = outputs["event_bus_arn"].split(":")[4]
    attributes = pipeline.aws("sns").get_topic_attributes(TopicArn=outputs["alarm_topic_arn"])[
        "Attributes"
    ]
    assert attributes["KmsMasterKeyId"] == outputs["alarm_topic_kms_key_arn"]
    statements = {s["Sid"]: s for s in json.loads(attributes["Policy"])["Statement"]}
    allow = statements["CloudWatchAlarmsOfThisAccountPublish"]
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == (
        "Allow", {"Service": "cloudwatch.amazonaws.com"}, "sns:Publish",
    )  # fmt: skip
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    deny = statements["NoIamPrincipalPublishes"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sns:Publish")
    assert set(statements) == {"CloudWatchAlarmsOfThisAccountPublish", "NoIamPrincipalPublishes"}

    kms = pipeline.aws("kms")
    key = outputs["alarm_topic_kms_key_arn"]
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
    key_statements = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    cloudwatch = [
        s for s in key_statements["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]  # fmt: skip
    assert [set(s["Action"]) for s in cloudwatch] == [{"kms:Decrypt", "kms:GenerateDataKey*"}]


def test_the_dashboard_has_a_row_for_every_destination(stack, pipeline):
    outputs = stack.outputs
    body = pipeline.aws("cloudwatch").get_dashboard(DashboardName=outputs["dashboard_name"])[
        "DashboardBody"
    ]
    widgets = json.loads(body)["widgets"]
    for destination in DESTINATIONS:
        row = [
            w for w in widgets if w["properties"].get("title", "").startswith(f"{destination}: ")
        ]
        graphed = {
            part for w in row for metric in w["properties"]["metrics"] for part in metric
            if isinstance(part, str)
        }  # fmt: skip
        named = {
            name for by_kind in watched_dimensions(outputs, destination).values()
            for name in by_kind.values()
        }  # fmt: skip
        assert named <= graphed, (destination, named - graphed)
        assert len({w["y"] for w in row}) == 1, "one row per destination"
    [alarm_widget] = [w for w in widgets if w["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {
        alarm["AlarmArn"] for alarm in deployed_alarms(pipeline, outputs).values()
    }


def test_an_alarm_and_its_recovery_reach_the_topic(stack, pipeline):
    outputs = stack.outputs
    cloudwatch, sns, sqs = (pipeline.aws(s) for s in ("cloudwatch", "sns", "sqs"))
    alarm = outputs["alarm_names"]["crm"]["dlq-not-empty"]
    before = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
    inbox = sqs.create_queue(QueueName="test-alarm-notifications")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    subscription = sns.subscribe(
        TopicArn=outputs["alarm_topic_arn"], Protocol="sqs", Endpoint=inbox_arn,
        Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True,
    )["SubscriptionArn"]  # fmt: skip
    received: list[dict[str, Any]] = []

    def notified(state: str) -> bool:
        for message in sqs.receive_message(
            QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
        return any(n["AlarmName"] == alarm and n["NewStateValue"] == state for n in received)

    try:
        for state in ("ALARM", "OK"):
            cloudwatch.set_alarm_state(
                AlarmName=alarm, StateValue=state, StateReason="tests/integration/test_alarms.py"
            )
            wait_until(lambda s=state: notified(s), timeout=20, what=f"the {state} notification")
    finally:
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue=before, StateReason="restored")
        sns.unsubscribe(SubscriptionArn=subscription)
        sqs.delete_queue(QueueUrl=inbox)
