"""KEDA scales a consumer from zero and back, on kind (`make e2e E2E_TARGET=kind`).

Sends a backlog of user events through the API, then watches the crm consumer Deployment:
KEDA must scale it from 0 to at least 1 replica while its SQS queue has messages, the queue
must drain, and KEDA must scale the Deployment back to 0 after the cooldown. Every wait is
bounded. Needs the stack from `make kind-up && skaffold run -p kind` (chart values
charts/datasync/ci/kind-values.yaml: pollingInterval 5 s, cooldownPeriod 30 s).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest

from tests.e2e import kind_target as kind
from tests.pipeline import Pipeline

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("E2E_TARGET") != "kind", reason="runs against kind: make e2e E2E_TARGET=kind"
    ),
]

DESTINATION = "crm"  # receives every user event
BACKLOG = 40
SCALE_UP_TIMEOUT = 180.0
DRAIN_TIMEOUT = 300.0
SCALE_DOWN_TIMEOUT = 240.0  # cooldownPeriod (30 s) + polling + pod termination (<= 90 s)
POLL_SECONDS = 2.0


@pytest.fixture(scope="module")
def apps() -> Any:
    from kubernetes import client, config

    config.load_kube_config(context=kind.CONTEXT)
    return client.AppsV1Api()


def _replicas(apps: Any, name: str) -> tuple[int, int]:
    deployment = apps.read_namespaced_deployment(name, kind.NAMESPACE)
    return deployment.spec.replicas or 0, deployment.status.ready_replicas or 0


def _wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL_SECONDS)
    pytest.fail(f"timed out after {timeout:.0f}s: {what}")


def _queue_depth(pipeline: Pipeline) -> int:
    """Visible + in-flight messages of the crm queue, asked of the emulator on the host."""
    attributes = pipeline.aws("sqs").get_queue_attributes(
        QueueUrl=pipeline.queue_url(DESTINATION),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _create_user(pipeline: Pipeline, index: int) -> int:
    email = f"kind-scale-{index}-{uuid.uuid4().hex[:8]}@example.com"
    return pipeline.call("POST", "/v1/users", {"email": email, "name": f"Scale {index}"}).status


def test_keda_scales_a_consumer_from_zero_and_back(pipeline: Pipeline, apps: Any) -> None:
    name = f"{kind.fullname()}-consumer-{DESTINATION}"
    # Start from zero: an earlier test may have left work that KEDA is still scaling down from.
    _wait_for(
        f"{name} at 0 replicas before the test",
        lambda: _replicas(apps, name)[0] == 0,
        SCALE_DOWN_TIMEOUT,
    )

    statuses = [_create_user(pipeline, i) for i in range(BACKLOG)]
    assert len(statuses) == BACKLOG and all(s in (200, 201, 202) for s in statuses), statuses

    # KEDA activates on the backlog and scales the Deployment up; a pod becomes ready.
    _wait_for(
        f"{name} scaled from 0 to >= 1 ready replica",
        lambda: _replicas(apps, name)[0] >= 1 and _replicas(apps, name)[1] >= 1,
        SCALE_UP_TIMEOUT,
    )

    # The consumer drains the queue (visible and in-flight messages).
    _wait_for(
        f"the {DESTINATION} queue to drain", lambda: _queue_depth(pipeline) == 0, DRAIN_TIMEOUT
    )

    # After the cooldown KEDA scales back to zero; the pod drains and exits on SIGTERM.
    _wait_for(
        f"{name} scaled back to 0", lambda: _replicas(apps, name) == (0, 0), SCALE_DOWN_TIMEOUT
    )
