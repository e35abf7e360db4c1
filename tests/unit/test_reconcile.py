"""The reconciler itself must notice each kind of failure it reports (else it proves nothing).

The "pipeline" here is the real contract, transforms and SQLite stores without the transport:
every acknowledged write becomes an event, each destination's transform turns it into records,
the store applies them. A faithful run reconciles clean; each test then breaks one thing.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from datasync.contract import DESTINATIONS, parse_event
from datasync.core.stores import open_store
from datasync.core.transforms import transform_for
from tests.reconcile import Ack, Ledger, StoreReader, Workload, reconcile

HASH_KEY = b"unit-test-analytics-hash-key"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def acknowledge(workload: Workload) -> Ledger:
    """A ledger as the client would have kept it: every write answered 202."""
    ledger = Ledger()
    for writes in workload.users:
        user_id = str(uuid.uuid4())
        for write in writes:
            ledger.acks.append(Ack(write, user_id, str(uuid.uuid4()), 1, 0.01))
    return ledger


def event_of(ack: Ack, at: datetime):
    data = {"user_id": ack.user_id, **(ack.write.body or {})}
    return parse_event(
        {
            "event_id": ack.event_id,
            "occurred_at": at.isoformat(),
            "correlation_id": "unit",
            "event_type": ack.write.event_type,
            "data": data,
        }
    )


def deliver(ledger: Ledger, store_dir, *, skip=(), logs_dir=None, twice=()) -> None:
    """Apply every acknowledged write to every store (except ``skip``: (destination, event id))."""
    transforms = {d: transform_for(d, analytics_hash_key=HASH_KEY) for d in DESTINATIONS}
    lines = {d: [] for d in DESTINATIONS}
    for index, ack in enumerate(ledger.acks):
        event = event_of(ack, T0 + timedelta(milliseconds=index))
        for destination in DESTINATIONS:
            if (destination, ack.event_id) in skip:
                continue
            store = open_store(destination, store_dir=store_dir)
            try:
                results = store.apply(transforms[destination](event))
            finally:
                store.close()
            for result in results:
                times = 2 if ack.event_id in twice else 1
                lines[destination] += [
                    {"events": {result.outcome: [f"{ack.event_id}/unit"]}}
                ] * times
    if logs_dir is not None:
        logs_dir.mkdir(exist_ok=True)
        for destination, entries in lines.items():
            text = "\n".join(json.dumps(e) for e in entries)
            (logs_dir / f"consumer-{destination}.log").write_text(text + "\n")


@pytest.fixture
def run(tmp_path):
    workload = Workload.generate(120, seed=3)
    ledger = acknowledge(workload)
    reader = StoreReader(store_dir=tmp_path / "stores", analytics_hash_key=HASH_KEY)
    return workload, ledger, reader


def test_a_faithful_run_reconciles_clean(run, tmp_path):
    _, ledger, reader = run
    deliver(ledger, reader.store_dir, logs_dir=tmp_path / "logs")
    report = reconcile(ledger, reader, logs_dir=tmp_path / "logs")
    assert report.ok, str(report)
    assert report.acknowledged == 120 and report.users == len({a.user_id for a in ledger.acks})


def test_an_event_missing_from_one_store_is_lost_there(run):
    _, ledger, reader = run
    victim = ledger.acks[5].event_id
    deliver(ledger, reader.store_dir, skip={("analytics", victim)})
    report = reconcile(ledger, reader)
    assert report.found["lost"]["analytics"] == [victim]
    assert report.count("lost") == 1 and not report.ok


def test_an_event_applied_twice_is_doubled(run, tmp_path):
    _, ledger, reader = run
    twice = ledger.acks[7].event_id
    deliver(ledger, reader.store_dir, logs_dir=tmp_path / "logs", twice={twice})
    report = reconcile(ledger, reader, logs_dir=tmp_path / "logs")
    assert twice in report.found["doubled"]["crm"] and report.count("lost") == 0
    assert not report.ok


def test_an_applied_event_nobody_acknowledged_is_unexpected(run):
    _, ledger, reader = run
    deliver(ledger, reader.store_dir)
    stranger = Ack(ledger.acks[0].write, ledger.acks[0].user_id, str(uuid.uuid4()), 1, 0)
    unacknowledged = Ledger(acks=[stranger])
    deliver(unacknowledged, reader.store_dir)
    report = reconcile(ledger, reader)
    assert stranger.event_id in report.found["unexpected"]["analytics"]
    assert not report.ok


def test_a_final_state_other_than_the_last_acknowledged_write_is_stale(run):
    _, ledger, reader = run
    deliver(ledger, reader.store_dir)
    alive = next(
        a.user_id
        for a in ledger.acks
        if a.write.seq == 0 and not any(b.user_id == a.user_id and b.write.method == "DELETE"
                                        for b in ledger.acks)
    )  # fmt: skip
    import sqlite3

    with sqlite3.connect(reader.store_dir / "crm.sqlite3") as conn:
        conn.execute(
            "UPDATE datasync_crm_records SET fields = json_set(fields, '$.name', 'Mallory')"
            " WHERE key = ?",
            (alive,),
        )
    report = reconcile(ledger, reader)
    assert report.found["stale"]["crm"] == [alive] and report.count("lost") == 0


def test_a_client_that_gave_up_makes_the_run_void(run):
    _, ledger, reader = run
    deliver(ledger, reader.store_dir)
    ledger.gave_up.append(ledger.acks[0].write)
    report = reconcile(ledger, reader)
    assert not report.ok and "gave up on 1" in report.void_reason
