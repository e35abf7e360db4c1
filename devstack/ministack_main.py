"""MiniStack's entry point, with its event source mappings taking batches as large as AWS's.

This file is run by MiniStack's own interpreter (``.tools/ministack/bin/python``), not ours:
it imports nothing from datasync, and MiniStack only inside ``main``.

Why: MiniStack 1.5.33 hands a function at most 10 SQS messages per batch, whatever the
mapping's ``BatchSize`` (``ministack.services.sqs._receive_messages_for_esm`` caps it); AWS
takes up to 10,000 from a standard queue. On the emulator every batch pays an invocation and
the intake's three SQS calls, so that cap alone held a burst of 2,000 events to about 920/s
at 1.7 ms of CPU per event; with batches of up to 100 (our Terraform's default) the same
burst ran at 1,560/s at 1.0 ms (BENCHMARKS.md, "Batches as large as AWS's").

What it does: it replaces that one function with the same steps and a larger limit
(``--esm-max-batch``; 10 restores MiniStack's own). It checks first that MiniStack's function
still reads as it did in 1.5.33; if it does not (another version), it replaces nothing, says
so, and MiniStack runs as shipped. Nothing else of MiniStack changes: the batching window is
still not honoured, so a batch is whatever is visible when the poller looks (AWS would wait up
to the window to fill it).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from types import ModuleType
from typing import Any

# The line of MiniStack 1.5.33 that caps a batch, and the names its function uses.
CAPPED = "max_n = min(int(max_number or 1), 10)"
USES = ("_queues_lock", "_get_q", "_expire_retained", "_dlq_sweep", "_collect_msgs")
AWS_MAX_BATCH = 10_000  # standard queues ("Batch size", Lambda developer guide)


def lift_esm_batch_cap(sqs: ModuleType, limit: int) -> str:
    """Let ``sqs``'s event source mapping receive take up to ``limit`` messages; what happened."""
    original = sqs._receive_messages_for_esm
    try:
        source = inspect.getsource(original)
    except (OSError, TypeError):
        source = ""
    if CAPPED not in source or not all(hasattr(sqs, name) for name in USES):
        return (
            "MiniStack's event source mapping receive is not the one this patch knows "
            "(another MiniStack version?): left as shipped, at most 10 messages per batch"
        )

    def receive_messages_for_esm(queue_url: str, max_number: int) -> list[dict[str, Any]]:
        # MiniStack 1.5.33's function, with ``limit`` where it had 10.
        with sqs._queues_lock:
            queue = sqs._get_q(queue_url)
            visibility = int(queue["attributes"].get("VisibilityTimeout", "30"))
            sqs._expire_retained(queue)
            sqs._dlq_sweep(queue)
            batch: list[dict[str, Any]] = sqs._collect_msgs(
                queue, min(int(max_number or 1), limit), visibility
            )
            return batch

    sqs._receive_messages_for_esm = receive_messages_for_esm
    return f"event source mappings take up to {limit} messages per batch (MiniStack: 10)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--esm-max-batch", type=int, default=AWS_MAX_BATCH)
    parser.add_argument(
        "--check", action="store_true", help="apply the patch, say what happened, and exit"
    )
    args = parser.parse_args(argv)
    from ministack import app  # type: ignore[import-not-found]  # MiniStack's interpreter only
    from ministack.services import sqs  # type: ignore[import-not-found]

    print(f"datasync: {lift_esm_batch_cap(sqs, args.esm_max_batch)}", file=sys.stderr, flush=True)
    if args.check:
        return 0
    sys.argv = [sys.argv[0]]  # MiniStack reads its settings from the environment
    return int(app.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
