"""A SQLite store that is locked, then cannot be written, while events flow through the real
pipeline to the session's own consumers (SQLite files in the stack's store directory).

Another writer holds the crm file's write lock for longer than the consumer's busy timeout, and
meanwhile the file is made unwritable (immutable as root): the consumer's connection that found
the lock is dropped, the next one opens a read-only file. Nothing is dead-lettered, the consumer
is not restarted, its /readyz says each reason in turn, and everything acknowledged is applied
once, in its final state, after the file is free and writable again.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from datasync.contract import DESTINATIONS
from tests.faults import FaultUnavailable, locked, unwritable
from tests.pipeline import ReadinessWatch, wait_until
from tests.reconcile import LoadClient, StoreReader, Workload, run_in_background, wait_until_settled

pytestmark = pytest.mark.integration

RATE = 20
LOCKED_SECONDS = 8  # longer than the consumer's 5 s busy timeout
UNWRITABLE_AFTER_SECONDS = 4  # the file stays unwritable this long after the lock is gone


def dlq_depth(pipeline, destination: str) -> int:
    attributes = pipeline.aws("sqs").get_queue_attributes(
        QueueUrl=pipeline.dlq_url(destination),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def lock_then_make_unwritable(file: Path) -> bool:
    """The fault's timeline; False if this machine cannot make the file unwritable."""
    with contextlib.ExitStack() as unwritable_file:
        with locked(file):
            time.sleep(1)
            try:
                unwritable_file.enter_context(unwritable(file))
            except FaultUnavailable as exc:
                print(f"\nthe file stays writable ({exc}): only the lock is tested")
                time.sleep(LOCKED_SECONDS - 1)
                return False
            time.sleep(LOCKED_SECONDS - 1)
        time.sleep(UNWRITABLE_AFTER_SECONDS)
    return True


def test_a_locked_then_unwritable_store_file_holds_the_events_and_applies_them_after(
    pipeline, stack
):
    store_dir = Path(pipeline.env["DATASYNC_STORE_DIR"])
    reader = StoreReader(
        store_dir=store_dir, analytics_hash_key=pipeline.env["DATASYNC_ANALYTICS_HASH_KEY"].encode()
    )
    consumer = stack.apps["consumer-crm"]
    pid, restarts = consumer.process.pid, consumer.restarts
    dead_before = {d: dlq_depth(pipeline, d) for d in DESTINATIONS}
    seconds = 4 + LOCKED_SECONDS + UNWRITABLE_AFTER_SECONDS + 4
    workload = Workload.generate(RATE * seconds, seed=23)
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=8, rate=RATE)
    with ReadinessWatch({d: stack.metrics_port(d) for d in DESTINATIONS}) as readiness:
        thread, result = run_in_background(client, workload)
        time.sleep(4)
        started = time.time()
        made_unwritable = lock_then_make_unwritable(store_dir / "crm.sqlite3")
        thread.join(timeout=120)
        report = wait_until_settled(
            reader, result["ledger"], timeout=60, logs_dir=stack.config.layout.logs_dir
        )
        wait_until(lambda: readiness.ready_now("crm"), timeout=30, what="crm ready again")
    assert report.ok, f"\n{report}"
    reasons = sorted(set(readiness.unready("crm", since=started)))
    print(f"\ncrm unready while its file was locked, then unwritable: {reasons}")
    assert any(r.endswith("OperationalError: database is locked") for r in reasons), reasons
    if made_unwritable:
        assert any(r.endswith("attempt to write a readonly database") for r in reasons), reasons
    assert {d: dlq_depth(pipeline, d) for d in DESTINATIONS} == dead_before
    assert consumer.process.pid == pid and consumer.restarts == restarts, "crm was restarted"
