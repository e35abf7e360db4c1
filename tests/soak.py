"""`make soak`: acknowledged means applied, proven under a steady rain of faults.

Starts its own supervised stack (`datasync up`, fresh emulator and stores in a temporary var
directory, free ports), sends a workload of realistic users through the API (registrations,
updates, opt-ins and outs, erasures) at a fixed rate while a fault hits every 1-3 s:

  consumer-kill   SIGKILL a random consumer (the supervisor restarts it)
  consumer-term   SIGTERM a random consumer (it finishes its batch; the supervisor restarts it)
  api-worker-kill SIGKILL one gunicorn worker (gunicorn starts another)
  emulator-pause  SIGSTOP MiniStack for 1-3 s, then SIGCONT

then waits for the pipeline to settle and reconciles every acknowledged write against every
store: one line per class (lost, doubled, unexpected, stale), exit 1 unless all are zero and the
client never gave up. The result is also written as JSON (--out).

    .venv/bin/python -m tests.soak --events 30000 --rate 150
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from datasync.local_layout import (
    LOCAL_API_KEY,
    Layout,
    read_env_file,
    read_process_file,
)
from devstack.launch import LaunchedStack, launch
from devstack.paths import ROOT
from devstack.processes import children_of
from tests.reconcile import LoadClient, StoreReader, Workload, reconcile

FAULTS = ("consumer-kill", "consumer-term", "api-worker-kill", "emulator-pause")


def say(message: str) -> None:
    print(f"soak: {message}", flush=True)


@dataclass
class Stack:
    """A `datasync up` of our own (devstack/launch.py): its layout, and what its files say."""

    layout: Layout
    launched: LaunchedStack | None = None

    @property
    def api_url(self) -> str:
        return self.layout.api_url

    def start(self, timeout: float) -> None:
        self.launched = launch(
            ROOT / ".venv" / "bin" / "datasync", self.layout,
            log_path=self.layout.var_dir / "up.log", cwd=ROOT,
        )  # fmt: skip
        self.launched.wait_until_ready(timeout)

    def stop(self) -> None:
        if self.launched:
            self.launched.stop()

    def env(self) -> dict[str, str]:
        return read_env_file(self.layout.env_file)

    def children(self) -> dict[str, int]:
        """name -> pid of each process the supervisor runs now (api, consumer-<d>, ...)."""
        return {child.name: child.pid for child in read_process_file(self.layout.process_file)}


@dataclass
class FaultInjector:
    stack: Stack
    rng: random.Random
    every: tuple[float, float] = (1.0, 3.0)
    injected: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)  # the target was not running (yet)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.rng.uniform(*self.every)):
            fault = self.rng.choice(FAULTS)
            if self.inject(fault):
                self.injected[fault] += 1
            else:
                self.missed[fault] += 1

    def inject(self, fault: str) -> bool:
        children = self.stack.children()
        consumers = [name for name in children if name.startswith("consumer-")]
        try:
            if fault in ("consumer-kill", "consumer-term") and consumers:
                sig = signal.SIGKILL if fault == "consumer-kill" else signal.SIGTERM
                os.kill(children[self.rng.choice(consumers)], sig)
                return True
            if fault == "api-worker-kill" and "api" in children:
                workers = children_of(children["api"])
                if workers:
                    os.kill(self.rng.choice(workers), signal.SIGKILL)
                    return True
            if fault == "emulator-pause" and "emulator" in children:
                pid = children["emulator"]
                os.kill(pid, signal.SIGSTOP)
                try:
                    time.sleep(self.rng.uniform(1.0, 3.0))
                finally:
                    os.kill(pid, signal.SIGCONT)
                return True
        except ProcessLookupError:
            return False
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="writes to send (30000)")
    parser.add_argument("--rate", type=float, default=150.0, help="writes per second (150)")
    parser.add_argument("--concurrency", type=int, default=24, help="client connections (24)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="workload and faults")
    parser.add_argument("--settle", type=float, default=600.0, help="seconds to wait to settle")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "soak-result.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary var directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="datasync-soak-"))
    stack = Stack(Layout.on_free_ports(var_dir))
    say(f"seed {args.seed}; {args.events} writes at {args.rate:.0f}/s; state in {var_dir}")
    started = time.monotonic()
    try:
        say("starting the stack (datasync up: emulator, terraform, API, consumers) ...")
        stack.start(timeout=600)
        say(f"stack up in {time.monotonic() - started:.0f}s: {stack.api_url}")
        result = soak(stack, args)
    finally:
        say("stopping the stack ...")
        stack.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(var_dir, ignore_errors=True)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for line in result["report"]:
        print(line, flush=True)
    say(f"{'PASSED' if result['ok'] else 'FAILED'} in {result['wall_seconds']:.0f}s ({args.out})")
    return 0 if result["ok"] else 1


def soak(stack: Stack, args: argparse.Namespace) -> dict:
    env = stack.env()
    workload = Workload.generate(args.events, seed=args.seed)
    applied_since = datetime.now(UTC).isoformat()
    client = LoadClient(
        stack.api_url, env.get("DATASYNC_API_KEYS", LOCAL_API_KEY).split(",")[0],
        concurrency=args.concurrency, rate=args.rate,
    )  # fmt: skip
    faults = FaultInjector(stack, random.Random(args.seed))
    stop_faults = threading.Event()
    injector = threading.Thread(target=faults.run, args=(stop_faults,), daemon=True)
    last = [0.0]

    def progress(ledger) -> None:
        now = time.monotonic()
        if now - last[0] >= 5:
            last[0] = now
            say(
                f"acknowledged {len(ledger.acks)}/{workload.size}, retries "
                f"{sum(ledger.retries.values())}, faults {sum(faults.injected.values())}"
            )

    sending = time.monotonic()
    injector.start()
    try:
        ledger = client.run(workload, progress=progress)
    finally:
        stop_faults.set()
        injector.join(timeout=10)
    send_seconds = time.monotonic() - sending
    say(f"sent in {send_seconds:.0f}s; waiting for the pipeline to settle ...")
    reader = StoreReader(
        store_dir=Path(env["DATASYNC_STORE_DIR"]),
        database_url=env.get("DATABASE_URL"),
        analytics_hash_key=env["DATASYNC_ANALYTICS_HASH_KEY"].encode(),
    )
    logs = stack.layout.logs_dir
    deadline = time.monotonic() + args.settle
    while True:
        report = reconcile(ledger, reader, logs_dir=logs, applied_since=applied_since)
        if report.count("lost") == 0 or time.monotonic() > deadline:
            break
        say(f"settling: {report.count('lost')} records not applied yet")
        time.sleep(5)
    latencies = sorted(a.latency_s for a in ledger.acks) or [0.0]
    # A soak in which one kind of fault never happened proves nothing about that kind.
    never = [f for f in FAULTS if not faults.injected[f]]
    lines = report.lines() + [
        f"faults        {sum(faults.injected.values())}  "
        + ", ".join(f"{f} {faults.injected[f]}" for f in FAULTS)
    ]
    if never:
        lines.append(f"VOID: no {', '.join(never)} happened")
    return {
        "ok": report.ok and not never,
        "seed": args.seed,
        "events": workload.size,
        "rate": args.rate,
        "send_seconds": round(send_seconds, 1),
        "faults_injected": dict(faults.injected),
        "faults_missed": dict(faults.missed),
        "client_retries": dict(ledger.retries),
        "ack_latency_s": {
            "p50": round(latencies[len(latencies) // 2], 3),
            "p99": round(latencies[int(len(latencies) * 0.99)], 3),
            "max": round(latencies[-1], 3),
        },
        "classes": {c: report.count(c) for c in ("lost", "doubled", "unexpected", "stale")},
        "report": lines,
    }


if __name__ == "__main__":
    sys.exit(main())
