"""Acknowledged means applied exactly once, in the final state the writes say, under faults.

Each test pushes a real workload through the session's stack (API -> EventBridge -> Lambda ->
SQS -> consumers -> stores) while something goes wrong, then reconciles every acknowledged write
against every store (tests/reconcile.py): zero lost, zero applied twice, zero unexpected, zero
stale. Each also checks that its fault really happened (retries seen, duplicates logged), so a
test cannot pass because the fault missed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.paths import ROOT, venv_bin
from tests.faults import SwitchableProxy, paused
from tests.pipeline import free_port, supervise, wait_until
from tests.reconcile import (
    Ack,
    Ledger,
    LoadClient,
    StoreReader,
    Workload,
    logged_outcomes,
    run_in_background,
    wait_until_settled,
)

pytestmark = pytest.mark.integration
SETTLE_SECONDS = 180


@pytest.fixture
def reader(pipeline) -> StoreReader:
    return StoreReader(
        store_dir=Path(pipeline.env["DATASYNC_STORE_DIR"]),
        database_url=pipeline.env.get("DATABASE_URL"),
        analytics_hash_key=pipeline.env["DATASYNC_ANALYTICS_HASH_KEY"].encode(),
    )


def assert_reconciled(stack, reader: StoreReader, ledger: Ledger) -> None:
    report = wait_until_settled(
        reader, ledger, timeout=SETTLE_SECONDS, logs_dir=stack.config.layout.logs_dir
    )
    assert report.ok, f"\n{report}"


def supervise_for(stack, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervise(stack)
        time.sleep(0.1)


def let_dead_long_polls_end(stack) -> None:
    """A SIGKILLed consumer's last long poll stays open on the emulator until its wait is over
    and takes the messages that arrive meanwhile; they come back only after the visibility
    timeout (60 s). Before timing a clean stop, let the polls of consumers that earlier tests
    killed run out: each began before its kill, so before its successor started."""
    wait = stack.config.receive_wait_seconds + 1
    newest = max(max(app.started_at, app.restart_at or 0.0) for app in stack.apps.values())
    supervise_for(stack, max(0.0, newest + wait - time.monotonic()))


def pid_of(stack, name: str) -> int:
    return stack.apps[name].process.pid


def test_consumers_killed_again_and_again_while_events_flow(pipeline, stack, reader):
    workload = Workload.generate(1200, seed=10)
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=12)
    thread, result = run_in_background(client, workload)
    killed = []
    for victim in ("consumer-crm", "consumer-analytics", "consumer-marketing", "consumer-crm"):
        supervise_for(stack, 1.5)
        before = pid_of(stack, victim)
        os.kill(before, signal.SIGKILL)
        started = time.monotonic()
        while pid_of(stack, victim) == before or stack.apps[victim].process.poll() is not None:
            assert time.monotonic() - started < 5, f"{victim} was not restarted within 5 s"
            supervise(stack)
            time.sleep(0.05)
        killed.append(victim)
    while thread.is_alive():
        supervise_for(stack, 0.5)
    ledger = result["ledger"]
    assert len(killed) == 4 and len(ledger.acks) == workload.size
    # Messages a killed consumer held come back after the queue's visibility timeout (60 s).
    report = wait_until_settled(
        reader, ledger, timeout=SETTLE_SECONDS, logs_dir=stack.config.layout.logs_dir,
        progress=lambda *_: supervise(stack),
    )  # fmt: skip
    assert report.ok, f"\n{report}"


def test_a_consumer_stopped_with_sigterm_during_a_burst_hands_nothing_back(pipeline, stack, reader):
    let_dead_long_polls_end(stack)  # what a kill left behind would be blamed on this stop
    # Paced, so the burst lasts ~8 s: unpaced, the pipeline had applied all of it before the
    # stop, and the test proved nothing about a stop with work in hand.
    workload = Workload.generate(1200, seed=9)
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=16, rate=150)
    applied_before = len(reader.applied_event_ids("crm"))
    thread, result = run_in_background(client, workload)
    supervise_for(stack, 3.0)
    victim = stack.apps["consumer-crm"].process
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(30) == 0, "SIGTERM must finish the batch in hand and exit 0"
    applied_by_the_victim = len(reader.applied_event_ids("crm")) - applied_before
    while thread.is_alive():
        supervise_for(stack, 0.5)
    assert len(result["ledger"].acks) == workload.size
    assert 0 < applied_by_the_victim, "the stopped consumer had applied nothing of the burst"
    settled_from = time.monotonic()
    report = wait_until_settled(
        reader, result["ledger"], timeout=SETTLE_SECONDS, logs_dir=stack.config.layout.logs_dir,
        progress=lambda *_: supervise(stack),
    )  # fmt: skip
    assert report.ok, f"\n{report}"
    # The stop came during the burst: the consumer the supervisor started after it had work.
    applied_by_the_successor = (
        len(reader.applied_event_ids("crm")) - applied_before - applied_by_the_victim
    )
    assert applied_by_the_successor > 0, "the burst was over before the stop"
    # A stop that abandoned received messages would leave them invisible for the queue's
    # visibility timeout (60 s); a clean stop hands nothing back to wait for.
    assert time.monotonic() - settled_from < 45, "the stop left messages to time out"


def test_the_emulator_paused_and_resumed_while_events_flow(pipeline, stack, reader):
    workload = Workload.generate(1000, seed=11)
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=12)
    thread, result = run_in_background(client, workload)
    for _ in range(3):
        time.sleep(1.5)
        with paused(stack.emulator.process.pid, 3.0):
            pass
    thread.join(timeout=600)
    ledger = result["ledger"]
    slowest = max(a.latency_s for a in ledger.acks)
    # A request caught by a pause is either refused (503, retried) or held until the bus resumes.
    assert ledger.retries or slowest >= 2.0, f"the pauses never reached a request ({slowest:.2f}s)"
    assert len(ledger.acks) == workload.size
    assert_reconciled(stack, reader, ledger)


@pytest.fixture
def api_behind_proxy(pipeline, stack, tmp_path):
    """A second API (real gunicorn) whose only way to the bus is a switchable proxy."""
    emulator_port = int(stack.emulator.url.rsplit(":", 1)[1])
    proxy = SwitchableProxy(("127.0.0.1", emulator_port))
    port = free_port()
    env = {
        **os.environ,
        **pipeline.env,
        "AWS_ENDPOINT_URL": proxy.url,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
    }
    log = tmp_path / "api-behind-proxy.log"
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603
            [venv_bin("gunicorn"), "--config", "python:apps.api.gunicorn_conf", "apps.api.wsgi:app"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/healthz"), timeout=30, what="the proxied API")
        yield url, proxy
    finally:
        process.terminate()
        process.wait(30)
        proxy.close()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def test_the_bus_refusing_and_hanging_connections_while_events_flow(
    pipeline, stack, reader, api_behind_proxy
):
    url, proxy = api_behind_proxy
    workload = Workload.generate(600, seed=12)
    client = LoadClient(url, pipeline.api_key, concurrency=8)
    thread, result = run_in_background(client, workload)
    for mode in ("refuse", "hang", "refuse"):
        time.sleep(1.0)
        proxy.set_mode(mode)
        time.sleep(3.0)
        proxy.set_mode("forward")
    thread.join(timeout=600)
    ledger = result["ledger"]
    assert ledger.retries["503"] > 0, f"no 503 seen during the outages: {ledger.retries}"
    assert len(ledger.acks) == workload.size
    assert_reconciled(stack, reader, ledger)


def put_on_bus(pipeline, events: list[dict]) -> None:
    bus = pipeline.env["DATASYNC_EVENT_BUS_NAME"]
    for start in range(0, len(events), 10):
        entries = [
            {
                "Source": "datasync.api",
                "DetailType": e["event_type"],
                "Detail": json.dumps(e),
                "EventBusName": bus,
            }
            for e in events[start : start + 10]
        ]
        response = pipeline.aws("events").put_events(Entries=entries)
        assert response["FailedEntryCount"] == 0, response


def test_duplicated_and_reordered_deliveries_converge_on_the_last_write(pipeline, stack, reader):
    """Every event 2-5 times, all shuffled: the stores end in the state of each user's last write."""
    workload = Workload.generate(400, seed=13)
    ledger = Ledger()
    rng = random.Random(13)  # noqa: S311
    start = datetime.now(UTC) - timedelta(minutes=5)
    deliveries = []
    copies: dict[str, int] = {}
    for writes in workload.users:
        user_id = str(uuid.uuid4())
        for write in writes:
            ack = Ack(write, user_id, str(uuid.uuid4()), 1, 0.0, time.time())
            ledger.acks.append(ack)
            event = {
                "event_id": ack.event_id,
                "schema_version": 1,
                "occurred_at": (start + timedelta(milliseconds=len(ledger.acks))).isoformat(),
                "correlation_id": f"reorder-{workload.run_id}",
                "event_type": write.event_type,
                "data": {"user_id": user_id, **(write.body or {})},
            }
            copies[ack.event_id] = rng.randint(2, 5)
            deliveries += [event] * copies[ack.event_id]
    rng.shuffle(deliveries)
    put_on_bus(pipeline, deliveries)
    assert_reconciled(stack, reader, ledger)

    # The copies really went all the way: each one after the first was seen as a duplicate.
    def duplicates_logged():
        seen = duplicate_counts(stack.config.layout.logs_dir, "crm")
        return all(seen[e] >= n - 1 for e, n in copies.items()) or None

    wait_until(duplicates_logged, timeout=60, what="every extra copy logged as a duplicate")


def duplicate_counts(logs_dir: Path, destination: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (logs_dir / f"consumer-{destination}.log").read_text().splitlines():
        if '"duplicate"' in line:
            for trace in json.loads(line).get("events", {}).get("duplicate", []):
                event_id = trace.split("/", 1)[0]
                counts[event_id] = counts.get(event_id, 0) + 1
    return counts


def test_an_archive_replay_of_a_window_applies_nothing_twice(
    pipeline, stack, reader, monkeypatch, capsys
):
    from apps.cli.main import main

    workload = Workload.generate(300, seed=14)
    # Paced, so that the middle third of the run is a window of several seconds.
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=6, rate=50)
    ledger = client.run(workload)
    assert_reconciled(stack, reader, ledger)
    # The archive knows each event by the time it occurred, in whole seconds (PutEvents' Time has
    # second precision): replay the whole seconds of the middle third of the run.
    occurred = {
        event_id: int(datetime.fromisoformat(at).timestamp())
        for event_id, at in reader.occurred_at(list({a.user_id for a in ledger.acks})).items()
    }
    seconds = sorted(occurred.values())
    first, last = seconds[len(seconds) // 3] + 1, seconds[2 * len(seconds) // 3] - 1
    window = [a for a in ledger.acks if first <= occurred[a.event_id] <= last]
    assert len(window) > 20, f"the window is too small to mean anything ({len(window)})"
    since = datetime.fromtimestamp(first, UTC).isoformat()
    to = datetime.fromtimestamp(last + 1, UTC).isoformat()  # the end of the last whole second
    before = duplicate_counts(stack.config.layout.logs_dir, "analytics")

    for name, value in pipeline.env.items():
        monkeypatch.setenv(name, value)
    assert main(["replay", "--since", since, "--to", to, "--timeout", "120"]) == 0
    assert '"COMPLETED"' in capsys.readouterr().out

    def replayed_window_seen():
        now = duplicate_counts(stack.config.layout.logs_dir, "analytics")
        return all(now.get(a.event_id, 0) > before.get(a.event_id, 0) for a in window)

    wait_until(replayed_window_seen, timeout=90, what="the replayed window at the consumers")
    report = wait_until_settled(reader, ledger, timeout=30, logs_dir=stack.config.layout.logs_dir)
    assert report.ok, f"\n{report}"
    applied = logged_outcomes(stack.config.layout.logs_dir)["analytics"]
    assert all(applied[a.event_id] == 1 for a in window)
