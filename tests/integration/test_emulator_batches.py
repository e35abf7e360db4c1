"""MiniStack through our entry point hands the intake batches of more than its own 10 messages.

Why it matters, and the figures: devstack/ministack_main.py and BENCHMARKS.md ("Batches as
large as AWS's"). The wrapper's logic is unit-tested in tests/unit/test_ministack_main.py; here
it runs with MiniStack's own interpreter: against its real sqs module (ministack_probe.py), and
in the session stack's emulator.
"""

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from devstack.settings import stack_settings
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

QUEUED = 25  # more than MiniStack's own limit of 10, fewer than the Terraform's batch size
PROBE = Path(__file__).with_name("ministack_probe.py")


def _ministack_python() -> str:
    return str(stack_settings().ministack_venv / "bin" / "python")


@pytest.mark.parametrize(("switch", "said"), [(None, "take up to 10000"), ("10", "as shipped")])
def test_the_entry_point_lifts_the_limit_of_the_installed_ministack_unless_told(
    monkeypatch, switch, said
):
    if switch:
        monkeypatch.setenv("DATASYNC_EMULATOR_ESM_MAX_BATCH", switch)
    command = [*stack_settings().ministack_command, "--check"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
    assert said in done.stderr, done.stderr


def test_the_wrapper_keeps_ministacks_visibility_receive_counts_and_dlq_moves():
    """The same 25 messages, polled as MiniStack's poller does, through the wrapper and through
    MiniStack's own function (the switch at 10): only the batch sizes differ."""
    lifted, shipped = (_probe(limit) for limit in (10_000, 10))
    assert "take up to 10000" in lifted["said"] and "left as shipped" in shipped["said"]
    assert [lifted["first"]["batches"], shipped["first"]["batches"]] == [[QUEUED], [10, 10, 5]]
    for run in (lifted, shipped):
        # each message once per delivery, hidden for the queue's 45 s, counted once more each time
        assert run["first"] | {"batches": None} == {
            "batches": None, "distinct": QUEUED, "receive_counts": [1], "hidden_for_seconds": 45,
        }  # fmt: skip
        assert run["second"]["receive_counts"] == [2] and run["second"]["distinct"] == QUEUED
        # past maxReceiveCount (2), MiniStack's sweep moves them all to the DLQ, none handed out
        assert run["third"]["batches"] == [] and run["dead_lettered"] == QUEUED
        assert run["fifo"] == [10, 10, 5]  # AWS's limit for FIFO queues, kept
        # the ReceiveMessage API keeps its own limit of 10, after the mapping's receives too
        assert run["receive_message"] == 10
    # no visibility timeout: one poll still hands each message out once, counted once
    assert lifted["instant"] == {
        "batch": QUEUED, "distinct": QUEUED, "receive_counts_in": [1], "receive_counts_out": [],
    }  # fmt: skip
    assert shipped["instant"] == {
        "batch": 10, "distinct": 10, "receive_counts_in": [1], "receive_counts_out": [0],
    }  # fmt: skip


def _probe(limit: int) -> dict:
    done = subprocess.run(  # noqa: S603 - MiniStack's interpreter, our probe
        [_ministack_python(), str(PROBE), "--esm-max-batch", str(limit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_events_queued_for_the_intake_reach_it_in_one_batch(pipeline, stack):
    intake = stack.outputs["intake_function_name"]
    lambdas = pipeline.aws("lambda")
    (mapping,) = lambdas.list_event_source_mappings(FunctionName=intake)["EventSourceMappings"]
    correlation_id = f"batch-{uuid.uuid4().hex[:10]}"
    # Pause the intake's mapping so that the events wait in its queue together.
    lambdas.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    try:
        for i in range(QUEUED):
            body = {"email": f"batch-{i}-{correlation_id}@example.com", "name": "Batch"}
            response = pipeline.call(
                "POST", "/v1/users", body, {"X-Correlation-ID": correlation_id}
            )
            assert response.status == 202, response.body
        wait_until(
            lambda: _visible(pipeline, stack.outputs["intake_queue_url"]) >= QUEUED,
            timeout=30,
            what=f"{QUEUED} events waiting in the intake queue",
        )
    finally:
        lambdas.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    batches = wait_until(
        lambda: _batch_sizes(pipeline, intake, correlation_id),
        timeout=60,
        what="the intake's log line for the queued events",
    )
    # One batch took them all (not three of at most 10, as MiniStack alone would hand them).
    assert batches == [QUEUED], batches


def _visible(pipeline, queue_url: str) -> int:
    attributes = pipeline.aws("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _batch_sizes(pipeline, function: str, correlation_id: str) -> list[int]:
    """How many of the queued events each intake batch that logged them held (all seen: sorted)."""
    pages = (
        pipeline.aws("logs")
        .get_paginator("filter_log_events")
        .paginate(logGroupName=f"/aws/lambda/{function}", filterPattern=f'"{correlation_id}"')
    )
    sizes = []
    for page in pages:
        for event in page["events"]:
            message = event["message"]
            line = json.loads(message[message.index("{") :])
            received = line.get("events", {}).get("received", [])
            sizes.append(sum(1 for trace in received if trace.endswith(f"/{correlation_id}")))
    return sorted(sizes, reverse=True) if sum(sizes) >= QUEUED else []
