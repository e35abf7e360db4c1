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

What it does: it wraps two of MiniStack's functions and calls each original once per batch.
``_receive_messages_for_esm`` (the mapping's poller calls it) notes, for the length of that one
call, how many messages the mapping asked for (``--esm-max-batch`` caps it), then runs
MiniStack's own function: its lock, retention expiry and DLQ sweep, visibility timeout. That
function ends in ``_collect_msgs(q, 10, visibility)``; the wrapped ``_collect_msgs`` hands
MiniStack's own the noted number instead of the 10. So a batch costs one walk of the queue, as
a larger cap in MiniStack would, and each message of it is received once, its receive count
raised once, exactly as MiniStack's own receive does it for any number up to 10.

The note is a context variable, so it is seen only inside that call on that thread: a
``ReceiveMessage`` (which calls ``_collect_msgs`` too) keeps its own at most 10, and so does a
FIFO queue (AWS caps those batches at 10, and MiniStack keeps a message group to one call).

It patches only MiniStack 1.5.33 (requirements/ministack.lock), the version whose source this
was written against, and only when both functions are there with the signatures it expects and
the first calls the second. Otherwise, or with ``--esm-max-batch 10`` (what
DATASYNC_EMULATOR_ESM_MAX_BATCH=10 passes), MiniStack runs as shipped, both functions its own,
and the log says why. Nothing else of MiniStack changes: the batching window is still not
honoured, so a batch is whatever is visible when the poller looks.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

KNOWN_VERSION = "1.5.33"  # the MiniStack this wrapper was written against (its lock file's pin)
AWS_MAX_BATCH = 10_000  # standard queues ("Batch size", Lambda developer guide)
RECEIVE = "_receive_messages_for_esm"
COLLECT = "_collect_msgs"
# The parameters of MiniStack 1.5.33's functions, as the wrappers call them.
SIGNATURES = {RECEIVE: ["queue_url", "max_number"], COLLECT: ["q", "max_n", "vis_timeout"]}

Receive = Callable[[str, Any], list[dict[str, Any]]]
Collect = Callable[[dict[str, Any], int, int], list[dict[str, Any]]]

# How many messages the event source mapping being served asked for; unset everywhere else.
_esm_batch: contextvars.ContextVar[int] = contextvars.ContextVar("datasync_esm_batch")


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
    if limit <= layout.MINISTACK_BATCH_LIMIT:
        return layout.as_shipped_line(
            f"--esm-max-batch {limit} (DATASYNC_EMULATOR_ESM_MAX_BATCH) asks for its own limit"
        )
    if ministack_version != KNOWN_VERSION:
        return layout.as_shipped_line(
            f"MiniStack {ministack_version} is not {KNOWN_VERSION}, the version this patch was "
            "written against (devstack/ministack_main.py)"
        )
    if mismatch := _unexpected_shape(sqs):
        return layout.as_shipped_line(f"{mismatch} (devstack/ministack_main.py)")
    sqs._collect_msgs = collecting_what_the_mapping_asked(getattr(sqs, COLLECT))
    sqs._receive_messages_for_esm = noting_what_the_mapping_asks(limit, getattr(sqs, RECEIVE))
    return str(layout.lifted_line(limit))


def _unexpected_shape(sqs: ModuleType) -> str | None:
    """Why MiniStack's functions are not the ones the wrappers were written for, or None."""
    for name, parameters in SIGNATURES.items():
        function = getattr(sqs, name, None)
        if not callable(function):
            return f"MiniStack has no sqs.{name}"
        found = list(inspect.signature(function).parameters)
        if found != parameters:
            return f"sqs.{name} takes ({', '.join(found)}), not ({', '.join(parameters)})"
    code = getattr(inspect.unwrap(getattr(sqs, RECEIVE)), "__code__", None)
    if code is None or COLLECT not in code.co_names:  # it must look ours up as a module global
        return f"sqs.{RECEIVE} does not call sqs.{COLLECT}"
    return None


def noting_what_the_mapping_asks(limit: int, receive: Receive) -> Receive:
    """``receive`` (MiniStack's function), called once with the mapping's batch size noted."""

    @functools.wraps(receive)
    def receive_messages_for_esm(queue_url: str, max_number: Any) -> list[dict[str, Any]]:
        wanted = min(int(max_number or 1), limit)  # MiniStack reads a missing BatchSize as 1
        token = _esm_batch.set(wanted)
        try:
            return receive(queue_url, max_number)
        finally:
            _esm_batch.reset(token)  # whatever happened: the next caller on this thread is not us

    return receive_messages_for_esm


def collecting_what_the_mapping_asked(collect: Collect) -> Collect:
    """``collect`` (MiniStack's function), asked for the mapping's batch size instead of its 10
    when an event source mapping on a standard queue is being served; as shipped otherwise."""

    @functools.wraps(collect)
    def collect_msgs(q: dict[str, Any], max_n: int, vis_timeout: int) -> list[dict[str, Any]]:
        wanted = _esm_batch.get(None)
        if wanted is None or q.get("is_fifo"):
            return collect(q, max_n, vis_timeout)
        return collect(q, wanted, vis_timeout)

    return collect_msgs


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
