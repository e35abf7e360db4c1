"""A consumer killed mid-batch (SIGKILL) or stopped (SIGTERM) loses and doubles nothing.

The test gives the consumer its own queue on the emulator (short visibility timeout, so
messages held by a killed process come back quickly) and its own store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from datasync.core.stores import open_store
from devstack.paths import ROOT, venv_bin
from tests.builders import record
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
MESSAGES = 300


@pytest.fixture
def crash_queue(pipeline):
    sqs = pipeline.aws("sqs")
    queues = pipeline.create_queue_with_dlq(
        f"crash-{uuid.uuid4().hex[:8]}", max_receive_count=10, VisibilityTimeout="4"
    )
    queue = queues["queue"]
    entries = [
        record(key=f"user-{i}", at=i, name=f"name-{i}").model_dump_json() for i in range(MESSAGES)
    ]
    for start in range(0, MESSAGES, 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(entries[start : start + 10])
            ],
        )
    yield queues
    for url in queues.values():
        sqs.delete_queue(QueueUrl=url)


def start_consumer(pipeline, queue_url, store_env, log_path):
    env = {**os.environ, **pipeline.env, **store_env, "DATASYNC_QUEUE_URL": queue_url}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [venv_bin("datasync-consumer"), "--destination", "crm", "--concurrency", "2"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def depth(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request, tmp_path):
    if request.param == "sqlite":
        return {"DATASYNC_STORE_DIR": str(tmp_path / "stores")}
    url = request.getfixturevalue("postgres_url")
    schema = f"crash_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return {"DATABASE_URL": f"{url}?options=-csearch_path%3D{schema}"}


def open_test_store(store_env):
    return open_store(
        "crm",
        database_url=store_env.get("DATABASE_URL"),
        store_dir=store_env.get("DATASYNC_STORE_DIR")
        and __import__("pathlib").Path(store_env["DATASYNC_STORE_DIR"]),
    )


def test_killed_and_stopped_consumers_lose_and_double_nothing(
    pipeline, crash_queue, store_env, tmp_path
):
    sqs = pipeline.aws("sqs")
    log = tmp_path / "consumer.log"
    kills = 0
    # Kill -9 the consumer three times while it works, then stop one with SIGTERM.
    for _ in range(3):
        process = start_consumer(pipeline, crash_queue["queue"], store_env, log)
        before = depth(sqs, crash_queue["queue"])
        wait_until(
            lambda b=before: depth(sqs, crash_queue["queue"]) < b - 5,
            timeout=60,
            interval=0.05,
            what="progress",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        kills += 1
    process = start_consumer(pipeline, crash_queue["queue"], store_env, log)
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(45) == 0, log.read_text()[-2000:]

    # A last consumer finishes the work (messages held by killed ones come back after 4 s).
    process = start_consumer(pipeline, crash_queue["queue"], store_env, log)
    try:
        wait_until(lambda: depth(sqs, crash_queue["queue"]) == 0, timeout=120, what="queue drained")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(45)

    store = open_test_store(store_env)
    try:
        assert store.applied_count() == MESSAGES  # every event applied once, none twice
        for i in (0, MESSAGES // 2, MESSAGES - 1):
            assert store.get(f"user-{i}")["name"] == f"name-{i}"
    finally:
        store.close()
    assert depth(sqs, crash_queue["dlq"]) == 0
    assert kills == 3
    assert "stopping after the batch in hand" in log.read_text()
