"""Real events through API -> EventBridge -> Lambda -> SQS -> consumers -> stores."""

import json
import uuid

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


def test_correlation_id_travels_to_the_consumers_logs_and_no_personal_data_is_logged(
    pipeline, stack
):
    email = flows.unique_email("trace")
    correlation_id = f"trace-{uuid.uuid4().hex[:10]}"
    response = pipeline.call(
        "POST",
        "/v1/users",
        {"email": email, "name": "Trace Me"},
        {"X-Correlation-ID": correlation_id},
    )
    assert response.headers["X-Correlation-ID"] == correlation_id
    user_id = response.body["user_id"]
    wait_until(lambda: pipeline.get("crm", user_id), what="crm record")
    logs = stack.config.logs_dir
    wait_until(
        lambda: correlation_id in (logs / "consumer-crm.log").read_text(),
        timeout=10,
        what="consumer log line",
    )
    assert correlation_id in (logs / "api.log").read_text()
    for log in logs.glob("*.log"):
        assert email not in log.read_text(), f"personal data in {log.name}"


def test_status_reports_every_destination(pipeline, stack, monkeypatch):
    from apps.cli.main import collect_status
    from datasync.settings import Settings

    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    status = collect_status(Settings())
    assert set(status) == {"crm", "marketing", "analytics"}
    for entry in status.values():
        assert {"visible", "in_flight"} <= set(entry["queue"]) and "dlq_depth" in entry
        assert entry["applied_events"] >= 0


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
        lines = (stack.config.logs_dir / "consumer-analytics.log").read_text().splitlines()
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
            "failure_reason": {"DataType": "String", "StringValue": "store was down"}
        },
    )
    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    assert main(["dlq", "crm"]) == 0
    assert "store was down" in capsys.readouterr().out
    assert main(["dlq", "crm", "--redrive"]) == 0
    assert '"to_queue": 1' in capsys.readouterr().out
    wait_until(
        lambda: (pipeline.get("crm", user_key) or {}).get("name") == "Redriven",
        what="redriven record",
    )
