"""The emulator entry point's wrapper against MiniStack's real sqs module, in process, no server.

Run by MiniStack's own interpreter (tests/integration/test_emulator_batches.py):

    .tools/ministack/bin/python tests/integration/ministack_probe.py --esm-max-batch 10000

It receives from queues the way MiniStack's event source mapping poller does (one call per poll,
the mapping's BatchSize of 100) and prints, as JSON, what a function would have been handed and
what became of the messages: receive counts, visibility, dead-letter moves.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--esm-max-batch", type=int, required=True)
    said = lift_esm_batch_cap(sqs, parser.parse_args().esm_max_batch, installed_version())

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
    instant = queue("instant", VisibilityTimeout="0")  # a received message is visible again
    send(instant, QUEUED)
    print(
        json.dumps(
            {
                "said": said,
                "first": first,
                "second": second,
                "third": third,
                "dead_lettered": len(sqs._get_q(dead)["messages"]),
                "fifo": deliveries(fifo)["batches"],
                "instant_first_batch": len(sqs._receive_messages_for_esm(instant, BATCH_SIZE)),
                "instant_receive_counts": sorted(
                    {m["receive_count"] for m in sqs._get_q(instant)["messages"]}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
