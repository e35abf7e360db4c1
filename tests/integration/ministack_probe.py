"""The emulator entry point's wrapper against MiniStack's real sqs module, in process, no server.

Run by MiniStack's own interpreter (tests/integration/test_emulator_batches.py):

    .tools/ministack/bin/python tests/integration/ministack_probe.py --esm-max-batch 10000

It receives from queues the way MiniStack's event source mapping poller does (one call per poll,
the mapping's BatchSize of 100) and prints, as JSON, what a function would have been handed and
what became of the messages: receive counts, visibility, dead-letter moves, and what a
ReceiveMessage call is handed meanwhile.

With ``--cost 2000,6000,20000`` it measures instead what the receive costs: the CPU per message
of draining a queue of each depth in batches of 100, the messages left in flight (as in a
burst, before the function deletes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for devstack/

from ministack.services import sqs  # type: ignore[import-not-found]  # noqa: E402

from devstack.ministack_main import installed_version, lift_esm_batch_cap  # noqa: E402

BATCH_SIZE = 100  # the Terraform's mappings
QUEUED = 25


def queue(name: str, **attributes: str) -> str:
    return sqs._act_create_queue({"QueueName": name, "Attributes": attributes}, "")["QueueUrl"]


def send(url: str, count: int, fifo: bool = False) -> None:
    for i in range(count):
        message: dict[str, Any] = {"QueueUrl": url, "MessageBody": f"event {i}"}
        if fifo:
            message |= {"MessageGroupId": f"user-{i}", "MessageDeduplicationId": f"event-{i}"}
        sqs._act_send_message(message, url)


def poll(url: str) -> list[list[dict[str, Any]]]:
    """The batches successive polls hand the function, until one comes back empty."""
    batches = []
    while batch := sqs._receive_messages_for_esm(url, BATCH_SIZE):
        batches.append(batch)
    return batches


def let_visibility_pass(url: str) -> None:
    """As if the visibility timeout had run out (the function failed the whole batch)."""
    for message in sqs._get_q(url)["messages"]:
        message["visible_at"] = time.time() - 1


def deliveries(url: str) -> dict[str, Any]:
    batches = poll(url)
    received = [m for batch in batches for m in batch]
    now = time.time()
    return {
        "batches": [len(batch) for batch in batches],
        "distinct": len({m["id"] for m in received}),
        "receive_counts": sorted({m["receive_count"] for m in received}),
        "hidden_for_seconds": round(min((m["visible_at"] - now for m in received), default=0)),
    }


def instant(url: str) -> dict[str, Any]:
    """One poll of a queue without a visibility timeout: what it handed out, and how often."""
    batch = sqs._receive_messages_for_esm(url, BATCH_SIZE)
    handed = {m["id"] for m in batch}
    counts = {m["id"]: m["receive_count"] for m in sqs._get_q(url)["messages"]}
    return {
        "batch": len(batch),
        "distinct": len(handed),
        "receive_counts_in": sorted({counts[i] for i in handed}),
        "receive_counts_out": sorted({n for i, n in counts.items() if i not in handed}),
    }


def receive_message(url: str) -> int:
    """How many messages the ReceiveMessage API hands out when asked for its most, 10."""
    asked = {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}
    return len(asyncio.run(sqs._act_receive_message(asked, url)).get("Messages", []))


def cost(depths: list[int]) -> dict[int, float]:
    """CPU microseconds per message of draining a queue of each depth, BatchSize 100."""
    per_message = {}
    for depth in depths:
        url = queue(f"cost-{depth}", VisibilityTimeout="300")
        for start in range(0, depth, 10):
            entries = [{"Id": str(i), "MessageBody": f"event {i}"} for i in range(10)]
            sqs._act_send_message_batch({"QueueUrl": url, "Entries": entries[: depth - start]}, url)
        started = time.process_time()
        drained = sum(len(batch) for batch in poll(url))
        per_message[depth] = round((time.process_time() - started) / drained * 1e6, 1)
        assert drained == depth, (drained, depth)
    return per_message


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--esm-max-batch", type=int, required=True)
    parser.add_argument("--cost", help="queue depths, comma-separated: measure, then exit")
    args = parser.parse_args()
    said = lift_esm_batch_cap(sqs, args.esm_max_batch, installed_version())
    if args.cost:
        depths = [int(depth) for depth in args.cost.split(",")]
        print(json.dumps({"said": said, "microseconds_per_message": cost(depths)}))
        return

    dead = queue("dead")
    redrive = {
        "maxReceiveCount": 2,
        "deadLetterTargetArn": sqs._get_q(dead)["attributes"]["QueueArn"],
    }
    work = queue("work", VisibilityTimeout="45", RedrivePolicy=json.dumps(redrive))
    send(work, QUEUED)
    first = deliveries(work)
    let_visibility_pass(work)
    second = deliveries(work)
    let_visibility_pass(work)  # a third receive would exceed maxReceiveCount: the sweep moves them
    third = deliveries(work)

    fifo = queue("work.fifo", FifoQueue="true", VisibilityTimeout="45")
    send(fifo, QUEUED, fifo=True)
    instant_queue = queue("instant", VisibilityTimeout="0")  # a received message is visible again
    send(instant_queue, QUEUED)
    api = queue("api")
    send(api, QUEUED)
    print(
        json.dumps(
            {
                "said": said,
                "first": first,
                "second": second,
                "third": third,
                "dead_lettered": len(sqs._get_q(dead)["messages"]),
                "fifo": deliveries(fifo)["batches"],
                "instant": instant(instant_queue),
                "receive_message": receive_message(api),
            }
        )
    )


if __name__ == "__main__":
    main()
