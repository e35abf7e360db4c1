"""README's "Operating it" walkthrough, step by step, with the commands it prints.

Send users, break the crm consumer on purpose (a bad migration makes its store refuse every
write), see the
records reach the DLQ with the reason and `status` raise the alarm condition, trace one event,
fix the store, redrive, and replay a window for crm alone: every event is applied exactly once
in the end. (Watching it on /dashboard: tests/integration/test_dashboard_browser.py.)
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.pipeline import consumer_outcomes, wait_until

pytestmark = pytest.mark.integration

BREAK = (
    "CREATE TRIGGER broken BEFORE INSERT ON datasync_crm_records "
    "BEGIN SELECT RAISE(ABORT, 'broken on purpose'); END"
)
FIX = "DROP TRIGGER broken"


def migrate(store: Path, statement: str) -> None:
    """README's one-liner: what a bad migration (and then its fix) does to the crm store."""
    with sqlite3.connect(store) as connection:
        connection.execute(statement)


def run_json(cli, capsys, *argv: str):
    capsys.readouterr()
    code = cli([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def crm_applied_at(store: Path, event_ids: set[str]) -> dict[str, str]:
    with sqlite3.connect(store) as connection:
        rows = connection.execute("SELECT event_id, applied_at FROM datasync_crm_applied_events")
        return {event_id: at for event_id, at in rows if event_id in event_ids}


def user_event_ids(trace: dict) -> set[str]:
    return {row["event_id"] for row in trace["found"] if row["event_id"]}


def test_break_a_consumer_see_the_dlq_and_alarm_trace_redrive_and_replay(
    cli, pipeline, stack, capsys, tmp_path
):
    crm_store = Path(pipeline.env["DATASYNC_STORE_DIR"]) / "crm.sqlite3"
    window_start = datetime.now(UTC) - timedelta(seconds=2)

    # 1. Send users through the API; they reach the stores.
    users = tmp_path / "users.txt"
    code, sent = run_json(cli, capsys, "send", "--count", "6", "--rate", "20", "--seed", "7",
                          "--out", str(users))  # fmt: skip
    assert code == 0 and sent["accepted"] == 6, sent
    first_user = users.read_text().split()[0]
    wait_until(lambda: pipeline.get("crm", first_user), what="the first user in crm")

    # 2. Break the crm consumer on purpose, then send more: crm cannot apply them.
    migrate(crm_store, BREAK)
    try:
        broken_users = tmp_path / "broken.txt"
        code, sent = run_json(cli, capsys, "send", "--count", "1", "--out", str(broken_users))
        assert code == 0 and sent["accepted"] == 1, sent  # the first request is a registration
        [victim] = broken_users.read_text().split()
        # `trace <user id>` learns the event's id from the stores that did apply it.
        victim_events = wait_until(
            lambda: user_event_ids(run_json(cli, capsys, "trace", victim, "--no-peek")[1]),
            what="the victim's event applied outside crm",
        )
        assert len(victim_events) == 1, victim_events

        # 3. After maxReceiveCount attempts they are in the crm DLQ, with the reason...
        def dead_lettered() -> list[dict]:
            _, listed = run_json(cli, capsys, "dlq", "list", "crm")
            return [m for m in listed if m["event_id"] in victim_events]

        [dead] = wait_until(dead_lettered, timeout=150, interval=3, what="the crm dead letter")
        assert "broken on purpose" in dead["reason"] and dead["stage"] == "consume", dead
        # ... `status` shows the alarm condition for crm only (other tests' DLQ messages aside),
        code, status = run_json(cli, capsys, "status")
        assert code == 0 and "dlq-not-empty" in status["crm"]["alarms"], status["crm"]
        # ... and `trace` says where the event is: dead-lettered in crm, applied elsewhere.
        code, traced = run_json(cli, capsys, "trace", victim, "--no-peek")
        places = {(row["where"], row["destination"]) for row in traced["found"]}
        assert ("dead-lettered", "crm") in places, traced["found"]
        assert {d for w, d in places if w.startswith("applied")} >= {"analytics"}, places
        assert crm_applied_at(crm_store, victim_events) == {}
    finally:
        # 4. The fix: the migration is rolled back.
        migrate(crm_store, FIX)

    # 5. Redrive: a dry run moves nothing, then each dead letter is applied, once.
    event_filter = f"event_id={sorted(victim_events)[0]}"
    code, dry = run_json(
        cli, capsys, "dlq", "redrive", "crm", "--dry-run", "--filter", event_filter
    )
    assert code == 0 and dry["to_queue"] + dry["to_buffer_queue"] == 1, dry
    assert crm_applied_at(crm_store, victim_events) == {}
    code, moved = run_json(cli, capsys, "dlq", "redrive", "crm", "--filter", event_filter)
    assert code == 0 and moved["to_queue"] + moved["to_buffer_queue"] == 1, moved
    applied = wait_until(lambda: crm_applied_at(crm_store, victim_events), what="redriven record")
    assert pipeline.get("crm", victim) is not None

    # 6. Replay the window for crm: its events come again, and nothing is applied twice.
    window_end = datetime.now(UTC) + timedelta(seconds=2)
    capsys.readouterr()
    assert cli(["replay", "--from", window_start.isoformat(), "--to", window_end.isoformat(),
                "--destination", "crm"]) == 0  # fmt: skip
    [event_id] = victim_events
    outcomes = wait_until(
        lambda: (
            "duplicate" in consumer_outcomes(stack.config.layout.logs_dir, "crm", event_id)
            and consumer_outcomes(stack.config.layout.logs_dir, "crm", event_id)
        ),
        what="the replayed event seen again by crm",
    )
    assert outcomes.count("applied") == 1, outcomes  # applied once: by the redrive
    assert crm_applied_at(crm_store, victim_events) == applied
