"""KEDA scales a consumer from zero and back, on kind (`make e2e E2E_TARGET=kind`).

Sends a backlog of user events through the API, then watches the crm consumer Deployment:
KEDA must scale it from 0 to at least 1 replica while its SQS queue has messages, the queue
must drain, and KEDA must scale the Deployment back to 0 after the cooldown. Every wait is
bounded. Needs the stack from `make kind-up && skaffold run -p kind` (chart values
charts/datasync/ci/kind-values.yaml: pollingInterval 5 s, cooldownPeriod 30 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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


def _kind() -> ModuleType:
    """kind_target.py beside this file, however the tests folder is laid out as packages."""
    module = sys.modules.get("tests.e2e.kind_target") or sys.modules.get("kind_target")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "kind_target", Path(__file__).with_name("kind_target.py")
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["kind_target"] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def target() -> dict[str, str]:
    return _kind().kind_target()


@pytest.fixture(scope="module")
def apps() -> Any:
    from kubernetes import client, config

    config.load_kube_config(context=_kind().CONTEXT)
    return client.AppsV1Api()


def _replicas(apps: Any, name: str) -> tuple[int, int]:
    deployment = apps.read_namespaced_deployment(name, _kind().NAMESPACE)
    return deployment.spec.replicas or 0, deployment.status.ready_replicas or 0


def _wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL_SECONDS)
    pytest.fail(f"timed out after {timeout:.0f}s: {what}")


def _queue_depth() -> int:
    """Visible + in-flight messages of the crm queue, asked of the emulator on the host."""
    import boto3

    env_file = Path(os.environ.get("DATASYNC_ENV_FILE", "var/local/datasync.env"))
    assert env_file.is_file(), f"{env_file} not found: the kind flow starts from `datasync up`"
    env = {}
    for line in env_file.read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            env[key.strip()] = value.strip().strip("'\"")
    sqs = boto3.client(
        "sqs",
        region_name=env.get("AWS_REGION", "us-east-1"),
        endpoint_url=env.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    attributes = sqs.get_queue_attributes(
        QueueUrl=env[f"DATASYNC_{DESTINATION.upper()}_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _create_user(api_url: str, api_key: str, index: int) -> int:
    body = json.dumps(
        {
            "email": f"kind-scale-{index}-{uuid.uuid4().hex[:8]}@example.com",
            "name": f"Scale {index}",
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (local port-forward)
        f"{api_url}/v1/users",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        return response.status


def test_keda_scales_a_consumer_from_zero_and_back(target: dict[str, str], apps: Any) -> None:
    name = f"{_kind().fullname()}-consumer-{DESTINATION}"
    # Start from zero: an earlier test may have left work that KEDA is still scaling down from.
    _wait_for(
        f"{name} at 0 replicas before the test",
        lambda: _replicas(apps, name)[0] == 0,
        SCALE_DOWN_TIMEOUT,
    )

    statuses = [_create_user(target["api_url"], target["api_key"], i) for i in range(BACKLOG)]
    assert len(statuses) == BACKLOG and all(s in (200, 201, 202) for s in statuses), statuses

    # KEDA activates on the backlog and scales the Deployment up; a pod becomes ready.
    _wait_for(
        f"{name} scaled from 0 to >= 1 ready replica",
        lambda: _replicas(apps, name)[0] >= 1 and _replicas(apps, name)[1] >= 1,
        SCALE_UP_TIMEOUT,
    )

    # The consumer drains the queue (visible and in-flight messages).
    _wait_for(f"the {DESTINATION} queue to drain", lambda: _queue_depth() == 0, DRAIN_TIMEOUT)

    # After the cooldown KEDA scales back to zero; the pod drains and exits on SIGTERM.
    _wait_for(
        f"{name} scaled back to 0", lambda: _replicas(apps, name) == (0, 0), SCALE_DOWN_TIMEOUT
    )
