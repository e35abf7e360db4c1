"""The operator's CLI against the session stack: DLQ list/redrive, trace, replay, send.

Each test works on ids of its own (a reason carrying a random token, fresh users), so other
tests' messages in the shared DLQs and stores do not disturb it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import flows
from tests.builders import record
from tests.pipeline import consumer_outcomes, wait_until

pytestmark = pytest.mark.integration


def applied_at(pipeline, destination: str, event_id: str) -> str | None:
    from datasync.core.stores import open_store

    store = open_store(destination, store_dir=Path(pipeline.env["DATASYNC_STORE_DIR"]))
    try:
        return store.applied_at(event_id)
    finally:
        store.close()


def test_dlq_list_redrive_filter_dry_run_and_repeat(cli, pipeline, stack, capsys):
    from datasync.core.queues import dead_letter

    token = uuid.uuid4().hex[:8]
    sqs, dlq = pipeline.aws("sqs"), pipeline.dlq_url("crm")
    poisoned = {"fixed": [], "still broken": []}
    for cause, count in (("fixed", 12), ("still broken", 3)):
        for i in range(count):
            one = record("crm", key=str(uuid.uuid4()), at=1, name=f"Redriven {i}")
            dead_letter(sqs, dlq, one.model_dump_json(), reason=f"{cause} {token}",
                        stage="consume", receive_count=5, attributes=one.message_attributes())  # fmt: skip
            poisoned[cause].append(str(one.event_id))
    everything = poisoned["fixed"] + poisoned["still broken"]

    assert cli(["dlq", "list", "crm", "--json"]) == 0
    listed = [m for m in json.loads(capsys.readouterr().out) if token in (m["reason"] or "")]
    assert sorted(m["event_id"] for m in listed) == sorted(everything)  # 15 > 10, none twice
    assert cli(["dlq", "list", "crm"]) == 0
    assert f"fixed {token}" in capsys.readouterr().out

    assert cli(["dlq", "redrive", "crm", "--dry-run", "--filter", f"reason={token}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_queue"] == 15
    assert cli(["dlq", "redrive", "crm", "--filter", f"reason=fixed {token}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_queue"] == 12  # the dry run moved nothing
    assert cli(["dlq", "redrive", "crm", "--filter", f"reason=fixed {token}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_queue"] == 0  # repeated: nothing left
    wait_until(lambda: all(applied_at(pipeline, "crm", e) for e in poisoned["fixed"]),
               what="the redriven records applied")  # fmt: skip
    assert cli(["dlq", "list", "crm", "--json"]) == 0
    left = [
        m["event_id"] for m in json.loads(capsys.readouterr().out) if token in (m["reason"] or "")
    ]
    assert sorted(left) == sorted(poisoned["still broken"])

    # The same records dead-lettered again (a redrive repeated after a crash): applied once.
    first = {e: applied_at(pipeline, "crm", e) for e in poisoned["fixed"][:2]}
    for event_id in first:
        one = record("crm", key=str(uuid.uuid4()), at=1, event_id=uuid.UUID(event_id))
        dead_letter(sqs, dlq, one.model_dump_json(), reason=f"again {token}", stage="consume",
                    attributes=one.message_attributes())  # fmt: skip
    assert cli(["dlq", "redrive", "crm", "--filter", f"reason=again {token}"]) == 0
    for event_id, at in first.items():
        wait_until(lambda e=event_id: "duplicate" in consumer_outcomes(stack.config.layout.logs_dir, "crm", e),
                   what="the repeated redrive seen as a duplicate")  # fmt: skip
        assert applied_at(pipeline, "crm", event_id) == at
    cli(["dlq", "redrive", "crm", "--filter", f"reason={token}"])  # leave the DLQ as found


def test_trace_finds_a_sent_user_applied_in_every_store(cli, pipeline, capsys):
    created = pipeline.create_user(email=flows.unique_email("trace"), name="Trace Me",
                                   marketing_opt_in=True)  # fmt: skip
    event_id = created["event_id"]
    wait_until(lambda: all(applied_at(pipeline, d, event_id) for d in ("crm", "marketing", "analytics")),
               what="the event in all three stores")  # fmt: skip
    for wanted in (event_id, created["user_id"]):
        assert cli(["trace", wanted, "--json", "--no-peek"]) == 0
        found = json.loads(capsys.readouterr().out)["found"]
        assert {r["destination"] for r in found if r["where"] == "applied"} == {
            "crm", "marketing", "analytics"}, wanted  # fmt: skip
        assert any(r["where"] == "accepted (API log)" and r["event_id"] == event_id for r in found)
    assert cli(["trace", str(uuid.uuid4())]) == 3


def test_replay_to_one_destination_filters_by_its_rule_and_applies_nothing_twice(
    cli, pipeline, stack, capsys
):
    start = datetime.now(UTC) - timedelta(seconds=2)
    created = pipeline.create_user(email=flows.unique_email("replay-one"), name="Replay One")
    event_id = created["event_id"]
    wait_until(lambda: all(applied_at(pipeline, d, event_id) for d in ("crm", "marketing", "analytics")),
               what="the event in all three stores")  # fmt: skip
    end = datetime.now(UTC) + timedelta(seconds=1)
    applied_first = applied_at(pipeline, "crm", event_id)
    assert cli(["replay", "--from", start.isoformat(), "--to", end.isoformat(),
                "--destination", "crm", "--timeout", "60"]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    rules = pipeline.aws("events").list_rules(EventBusName=pipeline.env["DATASYNC_EVENT_BUS_NAME"])
    [crm_rule] = [r["Arn"] for r in rules["Rules"] if r["Name"].endswith("crm")]
    assert (shown["state"], shown["filter_arns"]) == ("COMPLETED", [crm_rule])
    wait_until(lambda: "duplicate" in consumer_outcomes(stack.config.layout.logs_dir, "crm", event_id),
               what="the replayed event at the crm consumer")  # fmt: skip
    assert applied_at(pipeline, "crm", event_id) == applied_first
    assert len(pipeline.get("analytics", created["user_id"])["events"]) == 1
    # MiniStack ignores FilterArns, so the other destinations may see it too (and dedupe it):
    # what it cannot show is that AWS keeps them out; describe_replay shows the filter it got.


def test_send_fifty_at_25_per_second_reach_the_stores(cli, pipeline, tmp_path, capsys):
    out = tmp_path / "users.txt"
    assert cli(["send", "--count", "50", "--rate", "25", "--api-url", pipeline.api_url,
                "--out", str(out), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["accepted"], summary["refused"]) == (50, 50, {})
    users = out.read_text().split()
    assert len(users) == summary["users"] > 0
    wait_until(lambda: all(pipeline.get("crm", u) for u in users), timeout=90,
               what="every user sent in the CRM store")  # fmt: skip
