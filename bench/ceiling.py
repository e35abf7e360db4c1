"""The emulator's own ceiling: the pipeline's fan-out shape with no application code.

A bus of its own on the same emulator, three rules sending every event to three plain SQS
queues, and drainers that only receive and delete in batches of 10 (one process per queue,
like the consumers, with as many threads). Events/s delivered to all three is what the
emulator itself can move on this machine at that moment; the pipeline's throughput is reported
as a ratio of it. Everything it creates is deleted afterwards.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.aws import client
from bench.bus import BusPutter
from bench.users import SOURCE, bus_entries

FANOUT = 3


@dataclass
class CeilingResult:
    events: int
    started: float  # the first put (epoch seconds)
    seconds: float
    events_per_second: float
    delivered: list[int]  # per queue
    put_seconds: float
    drainer_cpu_seconds: float
    failed_puts: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            "delivered_per_queue": self.delivered,
            "put_seconds": round(self.put_seconds, 3),
            "drainer_cpu_seconds": round(self.drainer_cpu_seconds, 3),
            "failed_puts": self.failed_puts,
        }


def one_unit(_message: dict[str, Any]) -> int:
    return 1


def drain(
    env: dict[str, str],
    queue_url: str,
    expected: int,
    threads: int,
    deadline: float,
    units: Callable[[dict[str, Any]], int] = one_unit,
) -> dict[str, Any]:
    """Receive and delete until ``expected`` units are gone (own process): by default one per
    distinct message; ``units`` counts them otherwise (a module-level function: it crosses
    into the process)."""
    sqs = client("sqs", env, pool=threads + 2)
    seen: set[str] = set()
    state = {"count": 0, "last": 0.0}
    lock = threading.Lock()

    def work() -> None:
        while time.time() < deadline:
            with lock:
                if state["count"] >= expected:
                    return
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                continue
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            now = time.time()
            with lock:
                state["last"] = now
                for message in messages:
                    if message["MessageId"] not in seen:
                        seen.add(message["MessageId"])
                        state["count"] += units(message)

    # Only the draining counts: this process's start (an interpreter importing boto3) is not
    # what a consumer pays per message.
    before = resource.getrusage(resource.RUSAGE_SELF)
    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.time()) + 5)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "count": state["count"],
        "messages": len(seen),
        "last": state["last"],
        "cpu": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
    }


class Ceiling:
    def __init__(self, env: dict[str, str], drain_threads: int = 4) -> None:
        self.env = env
        self.drain_threads = drain_threads
        self.events = client("events", env)
        self.sqs = client("sqs", env)
        self.name = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
        self.queue_urls: list[str] = []

    def __enter__(self) -> Ceiling:
        self.events.create_event_bus(Name=self.name)
        for n in range(FANOUT):
            url = self.sqs.create_queue(QueueName=f"{self.name}-{n}")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            self.queue_urls.append(url)
            rule = f"{self.name}-{n}"
            self.events.put_rule(
                Name=rule, EventBusName=self.name, EventPattern=json.dumps({"source": [SOURCE]})
            )
            self.events.put_targets(
                Rule=rule, EventBusName=self.name, Targets=[{"Id": "q", "Arn": arn}]
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        bus = self.name
        for n, url in enumerate(self.queue_urls):
            rule = f"{bus}-{n}"
            for call in (
                lambda r=rule: self.events.remove_targets(Rule=r, EventBusName=bus, Ids=["q"]),
                lambda r=rule: self.events.delete_rule(Name=r, EventBusName=bus),
                lambda u=url: self.sqs.delete_queue(QueueUrl=u),
            ):
                try:
                    call()
                except Exception:  # noqa: BLE001, S110 - best effort: the emulator is thrown away
                    pass
        try:
            self.events.delete_event_bus(Name=self.name)
        except Exception:  # noqa: BLE001, S110
            pass

    def run(self, count: int, seed: int, timeout: float) -> CeilingResult:
        entries = bus_entries(seed, count, self.name, run_id=self.name)
        deadline = time.time() + timeout
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(FANOUT, mp_context=context) as pool:
            # Start the drainers first and let them reach their first long poll.
            futures = [
                pool.submit(drain, self.env, url, count, self.drain_threads, deadline)
                for url in self.queue_urls
            ]
            time.sleep(1.5)
            put = BusPutter(self.events).burst(entries)
            results = [future.result() for future in futures]
        end = max(r["last"] for r in results) or time.time()
        seconds = end - put.started
        delivered = [r["count"] for r in results]
        complete = min(delivered)
        return CeilingResult(
            events=count,
            started=put.started,
            seconds=seconds,
            events_per_second=complete / seconds if seconds > 0 else 0.0,
            delivered=delivered,
            put_seconds=put.finished - put.started,
            drainer_cpu_seconds=sum(r["cpu"] for r in results),
            failed_puts=len(put.failed),
        )
