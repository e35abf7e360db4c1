"""MiniStack's entry point, with its event source mappings taking batches as large as AWS's.

This file is run by MiniStack's own interpreter (``.tools/ministack/bin/python``), not ours: it
imports MiniStack only inside ``main``, and of datasync only the local layout module (standard
library only; loaded from its file, since MiniStack's environment has no datasync), which words
the line this writes to the emulator's log and `datasync up` and `make bench` read back.

Why: MiniStack 1.5.33 hands a function at most 10 SQS messages per batch, whatever the
mapping's ``BatchSize`` (``ministack.services.sqs._receive_messages_for_esm`` caps it); AWS
takes up to 10,000 from a standard queue. On the emulator every batch pays an invocation and
the intake's three SQS calls, so that cap alone held a burst of 2,000 events to about 920/s
at 1.7 ms of CPU per event; with batches of up to 100 (our Terraform's default) the same
burst ran at 1,560/s at 1.0 ms (BENCHMARKS.md, "Batches as large as AWS's").

What it does: it wraps that function. The wrapper calls MiniStack's own function again while
its last call came back full (10) and the mapping asked for more, until the batch is as large
as the mapping asks (``--esm-max-batch`` caps it) or the queue has nothing more to give. Every
call is MiniStack's own: its lock, retention expiry and DLQ sweep, its visibility timeout and
receive counts, so each message of a batch is received exactly once, as MiniStack receives it.
The wrapper stops early where more calls could change that: on a FIFO queue (AWS caps those
batches at 10 too, and MiniStack keeps a message group to one call), and when a message it
received is still visible (a visibility timeout of 0: the next call would hand it out again).

It patches only MiniStack 1.5.33 (requirements/ministack.lock), the version whose source this
was written against; with another version, or ``--esm-max-batch 10`` (what
DATASYNC_EMULATOR_ESM_MAX_BATCH=10 passes), MiniStack runs as shipped, its own function in
place, and the log says why. Nothing else of MiniStack changes: the batching window is still
not honoured, so a batch is whatever is visible when the poller looks.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

KNOWN_VERSION = "1.5.33"  # the MiniStack this wrapper was written against (its lock file's pin)
MINISTACK_CAP = 10  # what one call of its function hands out at most
AWS_MAX_BATCH = 10_000  # standard queues ("Batch size", Lambda developer guide)
FIFO_SUFFIX = ".fifo"

Receive = Callable[[str, Any], list[dict[str, Any]]]


def _local_layout() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "datasync" / "local_layout.py"
    spec = importlib.util.spec_from_file_location("datasync_local_layout", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


layout = _local_layout()


def lift_esm_batch_cap(sqs: ModuleType, limit: int, ministack_version: str) -> str:
    """Let ``sqs``'s event source mapping receive hand out up to ``limit`` messages per batch
    (or leave it as shipped); the line that says which, for the emulator's log."""
    if limit <= MINISTACK_CAP:
        return layout.as_shipped_line(
            f"--esm-max-batch {limit} (DATASYNC_EMULATOR_ESM_MAX_BATCH) asks for its own limit"
        )
    if ministack_version != KNOWN_VERSION:
        return layout.as_shipped_line(
            f"MiniStack {ministack_version} is not {KNOWN_VERSION}, the version this patch was "
            "written against (devstack/ministack_main.py)"
        )
    receive = getattr(sqs, "_receive_messages_for_esm", None)
    if not callable(receive):
        return layout.as_shipped_line("MiniStack has no sqs._receive_messages_for_esm")
    sqs._receive_messages_for_esm = batches_of_up_to(limit, receive)
    return str(layout.lifted_line(limit))


def batches_of_up_to(limit: int, receive: Receive) -> Receive:
    """``receive`` (MiniStack's function), called until the batch is as large as asked."""

    @functools.wraps(receive)
    def receive_messages_for_esm(queue_url: str, max_number: Any) -> list[dict[str, Any]]:
        wanted = min(int(max_number or 1), limit)  # MiniStack reads a missing BatchSize as 1
        batch: list[dict[str, Any]] = []
        while len(batch) < wanted:
            asked = min(wanted - len(batch), MINISTACK_CAP)
            try:
                received = receive(queue_url, asked)
            except Exception:  # noqa: BLE001 - e.g. the queue deleted meanwhile
                if not batch:
                    raise  # as MiniStack's own call would
                break  # what was received is this batch: it must reach the function
            batch += received
            if len(received) < asked or not _may_ask_again(queue_url, received):
                break
        return batch

    return receive_messages_for_esm


def _may_ask_again(queue_url: str, received: list[dict[str, Any]]) -> bool:
    """Another call hands out other messages only: not on a FIFO queue, and only while every
    message received is hidden (MiniStack collects the messages whose visible_at has passed)."""
    now = time.time()
    return not queue_url.endswith(FIFO_SUFFIX) and all(m["visible_at"] > now for m in received)


def installed_version() -> str:
    try:
        return version("ministack")
    except PackageNotFoundError:
        return "(not installed as a package)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--esm-max-batch", type=int, default=AWS_MAX_BATCH)
    parser.add_argument(
        "--check", action="store_true", help="apply the patch, say what happened, and exit"
    )
    args = parser.parse_args(argv)
    from ministack import app  # type: ignore[import-not-found]  # MiniStack's interpreter only
    from ministack.services import sqs  # type: ignore[import-not-found]

    said = lift_esm_batch_cap(sqs, args.esm_max_batch, installed_version())
    print(said, file=sys.stderr, flush=True)
    if args.check:
        return 0
    sys.argv = [sys.argv[0]]  # MiniStack reads its settings from the environment
    return int(app.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
