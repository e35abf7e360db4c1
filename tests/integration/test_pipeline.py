"""Real events through API -> EventBridge -> Lambda -> SQS -> consumers -> stores."""

import json
import uuid
from pathlib import Path

import pytest

from tests import flows
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def test_user_lifecycle_reaches_every_store(pipeline):
    flows.user_lifecycle(pipeline)


def test_poison_event_lands_in_every_dlq_with_the_reason(pipeline):
    flows.poison_event(pipeline)


def test_a_retried_request_with_the_same_idempotency_key_is_applied_once(pipeline):
    headers = {"Idempotency-Key": f"signup-{uuid.uuid4()}"}
    body = {"email": flows.unique_email("idem"), "name": "Retry Twice"}
    first = pipeline.call("POST", "/v1/users", body, headers)
    second = pipeline.call("POST", "/v1/users", body, headers)
    assert first.status == second.status == 202 and first.body == second.body
    user_id = first.body["user_id"]
    wait_until(lambda: pipeline.get("analytics", user_id), what="analytics event")
    wait_until(lambda: pipeline.get("crm", user_id), what="crm record")
    # Give the second copy time to arrive, then check it was not applied twice.
    marker = pipeline.create_user(email=flows.unique_email("marker"), name="After")
    wait_until(lambda: pipeline.get("analytics", marker["user_id"]), what="marker")
    assert len(pipeline.get("analytics", user_id)["events"]) == 1


TRACE_ID = uuid.uuid4().hex  # a valid W3C trace id: 32 lower-case hex digits, not all zero


@pytest.mark.parametrize(
    ("header", "sent", "expected"),
    [
        ("X-Correlation-ID", f"trace-{uuid.uuid4().hex[:10]}", None),
        ("X-Request-ID", f"request-{uuid.uuid4().hex[:10]}", None),
        ("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01", TRACE_ID),
    ],
    ids=["X-Correlation-ID", "X-Request-ID", "traceparent"],  # the same in every xdist worker
)
def test_one_correlation_id_is_logged_at_every_hop_and_no_personal_data_is_logged(
    pipeline, stack, header, sent, expected
):
    """API, the three Lambdas (CloudWatch Logs), the three consumers: each logs the id."""
    correlation_id = expected or sent
    email = flows.unique_email("trace")
    body = {"email": email, "name": "Trace Me", "marketing_opt_in": True}
    response = pipeline.call("POST", "/v1/users", body, {header: sent})
    assert response.status == 202
    assert response.headers["X-Correlation-ID"] == correlation_id
    user_id = response.body["user_id"]
    for destination in ("crm", "marketing", "analytics"):
        wait_until(lambda d=destination: pipeline.get(d, user_id), what=f"{destination} record")
    logs = stack.config.layout.logs_dir
    for destination in ("crm", "marketing", "analytics"):
        wait_until(
            lambda d=destination: correlation_id in (logs / f"consumer-{d}.log").read_text(),
            timeout=10,
            what=f"the {destination} consumer's log line",
        )
    assert correlation_id in (logs / "api.log").read_text()
    # The intake shaped it for every destination; their own functions saw nothing to do.
    intake = stack.outputs["intake_function_name"]
    wait_until(
        lambda: lambda_logged(pipeline, intake, correlation_id),
        timeout=30,
        what="the intake's log line",
    )
    for destination, function in stack.outputs["lambda_function_names"].items():
        assert not lambda_logged(pipeline, function, correlation_id), destination
    for log in logs.glob("*.log"):
        assert email not in log.read_text(), f"personal data in {log.name}"


def lambda_logged(pipeline, function: str, text: str) -> bool:
    pages = (
        pipeline.aws("logs")
        .get_paginator("filter_log_events")
        .paginate(logGroupName=f"/aws/lambda/{function}", filterPattern=f'"{text}"')
    )
    return any(text in event["message"] for page in pages for event in page["events"])


def test_status_reports_every_destination_and_what_its_store_applied(pipeline, stack, monkeypatch):
    from apps.cli.status import collect_status
    from datasync.settings import Settings
    from tests.reconcile import StoreReader

    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    destinations = ("crm", "marketing", "analytics")
    reader = StoreReader(store_dir=Path(pipeline.env["DATASYNC_STORE_DIR"]))
    event_id = pipeline.create_user(
        email=flows.unique_email("status"), name="Counted", marketing_opt_in=True
    )["event_id"]
    wait_until(
        lambda: all(event_id in reader.applied_event_ids(d) for d in destinations),
        what="the new user's event in every store",
    )

    def agreeing_status():
        """The status, once its applied counts are the stores' own (other tests' late events
        may still be arriving)."""
        status = collect_status(Settings())
        counted = {d: status[d]["applied_events"] for d in destinations}
        return (
            status
            if counted == {d: len(reader.applied_event_ids(d)) for d in destinations}
            else None
        )

    status = wait_until(agreeing_status, timeout=30, what="status to count what the stores hold")
    intake = status.pop("intake")
    assert {"visible", "in_flight"} <= set(intake["buffer"]) and intake["dlq_depth"] == 0
    assert set(status) == set(destinations)
    for entry in status.values():
        assert {"visible", "in_flight"} <= set(entry["queue"]) and "dlq_depth" in entry
        assert entry["applied_events"] >= 1 and entry["store_problem"] is None


def test_bad_requests_are_4xx_on_the_real_server(pipeline):
    assert pipeline.call("POST", "/v1/users", {"email": "x"}).status == 422
    assert pipeline.call("DELETE", "/v1/users/not-a-uuid").status == 422
    anonymous = pipeline.call(
        "POST", "/v1/users", {"email": "a@example.com", "name": "A"}, {"X-API-Key": "wrong"}
    )
    assert anonymous.status == 401


def test_archive_replay_redelivers_and_consumers_deduplicate(pipeline, stack, monkeypatch, capsys):
    from apps.cli.main import main

    created = pipeline.create_user(email=flows.unique_email("replay"), name="Replay Me")
    user_id, event_id = created["user_id"], created["event_id"]
    wait_until(lambda: pipeline.get("analytics", user_id), what="analytics event")
    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    assert main(["replay", "--minutes", "5", "--timeout", "120"]) == 0
    assert '"COMPLETED"' in capsys.readouterr().out

    def duplicate_seen():
        lines = (stack.config.layout.logs_dir / "consumer-analytics.log").read_text().splitlines()
        duplicates = [json.loads(line).get("events", {}).get("duplicate", []) for line in lines]
        return any(trace.startswith(event_id) for found in duplicates for trace in found)

    wait_until(duplicate_seen, timeout=60, what="the replayed event reaching the consumer")
    assert len(pipeline.get("analytics", user_id)["events"]) == 1  # delivered twice, applied once


def test_dlq_redrive_sends_each_message_back_to_where_it_failed(pipeline, monkeypatch, capsys):
    from apps.cli.main import main
    from tests.builders import record

    user_key = str(uuid.uuid4())
    given_up = record("crm", key=user_key, at=1, name="Redriven")
    pipeline.aws("sqs").send_message(
        QueueUrl=pipeline.dlq_url("crm"),
        MessageBody=given_up.model_dump_json(),
        MessageAttributes={
            "failure_reason": {"DataType": "String", "StringValue": f"store was down {user_key}"}
        },
    )
    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    assert main(["dlq", "list", "crm"]) == 0
    assert "store was down" in capsys.readouterr().out
    # Only this test's message: other tests leave theirs in the shared DLQ.
    assert main(["dlq", "redrive", "crm", "--filter", f"reason={user_key}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_queue"] == 1
    wait_until(
        lambda: (pipeline.get("crm", user_key) or {}).get("name") == "Redriven",
        what="redriven record",
    )
