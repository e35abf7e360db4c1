"""Unit-test fixtures: fakes for the bus, an in-process moto for SQS."""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from apps.api.app import create_app
from datasync.core.bus import PublishError
from datasync.settings import Settings

# Outside local mode a key has at least 32 characters (datasync/settings.py).
API_KEY = "unit-test-key-0123456789abcdefghijklmn"
OTHER_KEY = "other-key-0123456789abcdefghijklmnopq"


class FakePublisher:
    """Records published events; can be told to refuse them like an unavailable bus.

    The API sees what it sees of the real EventPublisher: publish(), publish_many(),
    is_reachable(), circuit.
    """

    def __init__(self):
        self.events = []
        self.refusal: PublishError | None = None
        self.refuse_if = lambda event: False  # refuse some events of a batch only
        self.reachable = True
        self.circuit = "closed"
        self.probes = 0

    def publish(self, event):
        [result] = self.publish_many([event])
        if isinstance(result, PublishError):
            raise result
        return result

    def publish_many(self, events):
        results = []
        for event in events:
            if self.refusal is not None or self.refuse_if(event):
                results.append(self.refusal or PublishError("refused", retry_after=2.5))
                continue
            self.events.append(event)
            results.append("entry-id")
        return results

    def is_reachable(self):
        self.probes += 1
        return self.reachable


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def app(publisher):
    settings = Settings(DATASYNC_ENV="aws", DATASYNC_API_KEYS=f"{OTHER_KEY},{API_KEY}")
    return create_app(settings, publisher=publisher)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def aws(monkeypatch):
    """moto in-process: real boto3 calls, fake AWS. Unit tests only."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def sqs(aws):
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queues(sqs):
    """A destination queue with a DLQ and a redrive policy (maxReceiveCount 3)."""
    dlq = sqs.create_queue(QueueName="dest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="dest",
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "3"}}',
        },
    )["QueueUrl"]
    return {"queue": queue, "dlq": dlq}


def drain(sqs, url, max_batches=10):
    """Every message currently visible in a queue (removes them)."""
    messages = []
    for _ in range(max_batches):
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return messages
