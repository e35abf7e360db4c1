"""The database goes away and comes back while events flow through the real pipeline.

For this module the session stack's three consumers are replaced by the same consumers on a
PostgreSQL server of the module's own (supervised the same way, logging to
``consumer-<destination>-postgres.log``). Then, while the API takes writes at a steady rate, the
server is restarted (``pg_ctl restart -m fast``), crashed (``-m immediate``) and started 5 s
later, and shut down for 60 s (a managed database's failover takes one to two minutes).
Afterwards every acknowledged write is in every store exactly once and in its final state
(tests/reconcile.py), nothing was dead-lettered, no consumer was restarted, what was
acknowledged before the database's return was applied within 30 s of it, and each consumer's
/readyz said why it was not ready while the database was away.
"""

from __future__ import annotations

import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest

from datasync.contract import DESTINATIONS
from devstack.paths import ROOT, venv_bin
from devstack.processes import spawn
from devstack.supervisor import Supervised
from tests.pipeline import ReadinessWatch, wait_until
from tests.postgres import PostgresServer, running_postgres
from tests.reconcile import LoadClient, StoreReader, Workload, run_in_background, wait_until_settled

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

RATE = 20  # writes per second offered to the API, before, during and after the outage
BEFORE_SECONDS = 4  # events flow this long before the fault, and as long after it
APPLIED_WITHIN_SECONDS = 30  # of the database's return


@dataclass(frozen=True)
class Outage:
    name: str
    stop_mode: str  # pg_ctl stop -m: fast (sessions told, clean shutdown) or immediate (crash)
    down_seconds: float  # 0: a restart

    def inflict(self, database: PostgresServer) -> None:
        if not self.down_seconds:
            database.restart(self.stop_mode)
            return
        database.stop(self.stop_mode)
        time.sleep(self.down_seconds)
        database.start()


OUTAGES = [
    Outage("a fast restart", "fast", 0),
    Outage("a crash, 5 s down", "immediate", 5),
    Outage("60 s down, as in a failover", "fast", 60),
]


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    with running_postgres(tmp_path_factory.mktemp("outage-db")) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_consumers(stack, pipeline, database):
    """The session's consumers, swapped for consumers on ``database`` until the module ends."""
    originals = {name: app for name, app in stack.apps.items() if name.startswith("consumer-")}
    for app in originals.values():
        app.process.send_signal(signal.SIGTERM)
    for app in originals.values():
        app.process.wait(30)
    env = {
        **os.environ, **pipeline.env, "DATABASE_URL": database.url,
        "DATASYNC_ENV_FILE": str(stack.config.layout.env_file),
        "DATASYNC_RECEIVE_WAIT_SECONDS": str(stack.config.receive_wait_seconds),
    }  # fmt: skip
    try:
        for name in originals:
            destination = name.removeprefix("consumer-")
            command = [venv_bin("datasync-consumer"), "--destination", destination,
                       "--health-host", "127.0.0.1"]  # fmt: skip
            start = functools.partial(
                spawn, command, cwd=ROOT,
                log_path=stack.config.layout.logs_dir / f"{name}-postgres.log",
                env={**env, "DATASYNC_HEALTH_PORT": str(stack.metrics_port(destination))},
            )  # fmt: skip
            stack.apps[name] = Supervised(name, start, say=print)
            stack.apps[name].launch()
        watch = ReadinessWatch(health_ports(stack))
        for destination in DESTINATIONS:
            wait_until(lambda d=destination: watch.ready_now(d), timeout=30, what=f"{destination}")
        yield {name: stack.apps[name] for name in originals}
    finally:
        for name, original in originals.items():
            replacement = stack.apps[name]
            if replacement is not original and replacement.process is not None:
                replacement.process.send_signal(signal.SIGTERM)
                replacement.process.wait(30)
            stack.apps[name] = original
            original.launch()


def health_ports(stack) -> dict[str, int]:
    return {destination: stack.metrics_port(destination) for destination in DESTINATIONS}


def dlq_depths(pipeline) -> dict[str, int]:
    sqs = pipeline.aws("sqs")
    depths = {}
    for destination in DESTINATIONS:
        attributes = sqs.get_queue_attributes(
            QueueUrl=pipeline.dlq_url(destination),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[destination] = sum(int(v) for v in attributes.values())
    return depths


def server_started_at(database: PostgresServer) -> str:
    with psycopg.connect(database.url) as connection:
        return str(connection.execute("SELECT pg_postmaster_start_time()").fetchone()[0])


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda outage: outage.name)
def test_the_database_goes_away_and_comes_back_while_events_flow(
    outage, pipeline, stack, database, postgres_consumers
):
    reader = StoreReader(
        database_url=database.url,
        analytics_hash_key=pipeline.env["DATASYNC_ANALYTICS_HASH_KEY"].encode(),
    )
    pids = {name: app.process.pid for name, app in postgres_consumers.items()}
    dead_before, started_before = dlq_depths(pipeline), server_started_at(database)
    workload = Workload.generate(int(RATE * (2 * BEFORE_SECONDS + outage.down_seconds)), seed=21)
    client = LoadClient(pipeline.api_url, pipeline.api_key, concurrency=8, rate=RATE,
                        correlation_prefix=f"outage-{uuid.uuid4().hex[:6]}")  # fmt: skip
    with ReadinessWatch(health_ports(stack)) as readiness:
        thread, result = run_in_background(client, workload)
        time.sleep(BEFORE_SECONDS)
        went_away = time.time()
        outage.inflict(database)
        came_back = time.time()
        thread.join(timeout=outage.down_seconds + 120)
        ledger = result["ledger"]
        report = wait_until_settled(
            reader,
            ledger,
            timeout=APPLIED_WITHIN_SECONDS + 30,
            logs_dir=stack.config.layout.logs_dir,
        )
        wait_until(lambda: all(readiness.ready_now(d) for d in DESTINATIONS), timeout=30,
                   what="every consumer ready again")  # fmt: skip
    assert server_started_at(database) != started_before, "the server was never restarted"
    assert len(ledger.acks) == workload.size
    assert report.ok, f"\n{report}"

    # Everything acknowledged until the database came back was applied within 30 s of it.
    waited = {a.event_id for a in ledger.acks if a.acked_at <= came_back}
    during = [a for a in ledger.acks if went_away <= a.acked_at <= came_back]
    applied = {d: reader.applied_times(d) for d in DESTINATIONS}
    last = max(t for times in applied.values() for event, t in times.items() if event in waited)
    unready = {d: readiness.unready(d, since=went_away) for d in DESTINATIONS}
    print(
        f"\n{outage.name}: database away {came_back - went_away:.1f} s, {len(during)} writes "
        f"acknowledged meanwhile; the last write acknowledged before its return was applied "
        f"{last - came_back:+.1f} s after it; DLQ growth "
        f"{ {d: dlq_depths(pipeline)[d] - dead_before[d] for d in DESTINATIONS} }; "
        f"unready: { {d: sorted(set(r))[:2] for d, r in unready.items()} }"
    )
    assert last - came_back <= APPLIED_WITHIN_SECONDS
    assert dlq_depths(pipeline) == dead_before, "something was dead-lettered"
    for name, app in postgres_consumers.items():
        assert app.process.poll() is None and app.process.pid == pids[name], f"{name} restarted"
        assert app.restarts == 0, f"{name} was restarted"
    if outage.down_seconds:
        # The API went on acknowledging, and every consumer said why it did not work.
        assert during, "no write was acknowledged while the database was away"
        for destination, reasons in unready.items():
            assert any(r.startswith("store unreachable: ") for r in reasons), (destination, reasons)
