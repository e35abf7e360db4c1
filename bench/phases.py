"""The measuring passes, each against a ready stack: API, bursts, ceiling, sustained run.

Each pass returns plain dicts for the result JSON. Waiting is always bounded (the drain
timeout) and what did not arrive in time is counted and reported, never silently dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.aws import client
from bench.bus import BusPutter, PutResult
from bench.ceiling import Ceiling
from bench.config import TOOL_ROOT, Config
from bench.loadgen import latency
from bench.monitor import Monitor
from bench.stack import Stack
from bench.stats import percentile, summary_ms
from bench.stores import Stores
from bench.users import bus_entries, event_id_of


@dataclass
class Context:
    config: Config
    stack: Stack
    monitor: Monitor
    stores: Stores
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    say: Any = print

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env


# -- waiting ------------------------------------------------------------------------------------
def wait_applied(
    ctx: Context, event_ids: set[str], baseline: dict[str, int], timeout: float
) -> bool:
    """Until every store's applied count grew by len(event_ids), or ``timeout``; True if so."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        counts = ctx.stores.counts()
        if all(
            counts.get(d, 0) - baseline.get(d, 0) >= len(event_ids) for d in ctx.stack.destinations
        ):
            return True
        time.sleep(0.5)
    return False


def wait_quiet(ctx: Context, timeout: float = 120) -> bool:
    """Until every queue is empty and no store has applied anything for 2 s.

    The stores must be still too: an API that was overloaded keeps publishing requests whose
    client already gave up (timed out), and those must not flow into the next pass.
    """
    deadline = time.time() + timeout
    previous = None
    while time.time() < deadline:
        empty = all(v == 0 for entry in ctx.monitor.depths().values() for v in entry.values())
        counts = ctx.stores.counts()
        if empty and counts == previous:
            return True
        previous = counts if empty else None
        time.sleep(2)
    return False


def processed(before: dict[str, int], after: dict[str, int]) -> int:
    """Events applied in every destination between two store counts (the fewest of them)."""
    return min((after.get(d, 0) - n for d, n in before.items()), default=0)


def applied_everywhere(
    ctx: Context, event_ids: set[str]
) -> tuple[dict[str, float], dict[str, int]]:
    """{event_id: when the last destination applied it} and how many each destination misses."""
    applied = ctx.stores.applied_at(event_ids)
    everywhere = {}
    for event_id in event_ids:
        times = [applied[d].get(event_id) for d in ctx.stack.destinations]
        if all(t is not None for t in times):
            everywhere[event_id] = max(times)  # type: ignore[type-var]
    missing = {d: len(event_ids) - len(applied[d]) for d in ctx.stack.destinations}
    return everywhere, missing


# -- API pass -----------------------------------------------------------------------------------
class LoadGenerator:
    """``python -m bench.loadgen`` in a process of its own, its progress read from stdout."""

    def __init__(self, ctx: Context, rate: float, seconds: float, label: str) -> None:
        self.out = ctx.config.var_dir / f"loadgen-{ctx.run_id}-{label}.jsonl"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.start_at = time.time() + 2
        self.status = {"sent": 0, "done": 0, "ok": 0}
        command = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            ctx.stack.api_url,
            "--key",
            ctx.stack.api_key,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--seed",
            str(ctx.config.seed),
            "--run-id",
            f"{ctx.run_id}-{label}",
            "--start-at",
            str(self.start_at),
            "--out",
            str(self.out),
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            command, cwd=TOOL_ROOT, stdout=subprocess.PIPE, text=True
        )
        ctx.monitor.sampler.own[self.process.pid] = "load_generator"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.status = json.loads(line)
            except ValueError:
                continue

    def line(self) -> str:
        return f"sent {self.status['sent']} done {self.status['done']} 202 {self.status['ok']} |"

    def wait(self, timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:  # timed out or interrupted: never leave it behind
                self.process.kill()
                self.process.wait(5)
        if self.process.returncode != 0:
            raise RuntimeError(f"the load generator failed (exit {self.process.returncode})")
        rows = [json.loads(line) for line in self.out.read_text().splitlines()]
        return [r for r in rows if "summary" not in r], rows[-1]["summary"]


def api_pass(ctx: Context, rate: float, seconds: float, label: str = "api") -> dict[str, Any]:
    """Open-loop POST /v1/users at ``rate`` for ``seconds``, then 202 -> applied everywhere.

    ``processed`` counts every event the pipeline applied meanwhile, including those of
    requests the generator gave up on (timed out) but the API still published.
    """
    baseline = ctx.stores.counts()
    load = LoadGenerator(ctx, rate, seconds, label)
    ctx.monitor.set_phase(label, load.line)
    results, generator = load.wait(timeout=seconds + 120)
    accepted = {r["event_id"]: r for r in results if r["status"] == 202 and r["event_id"]}
    ctx.monitor.set_phase(f"{label}-drain")
    drained = wait_applied(ctx, set(accepted), baseline, ctx.config.drain_timeout)
    # Events of requests the generator gave up on count towards the stores' totals too, so
    # wait for quiet before deciding what did not arrive.
    wait_quiet(ctx)
    everywhere, missing = applied_everywhere(ctx, set(accepted))
    end = max(everywhere.values(), default=time.time())
    first_due = min(r["due"] for r in results)
    processed_events = processed(baseline, ctx.stores.counts())
    last_done = max(r["done"] for r in results)
    e2e = [everywhere[i] - accepted[i]["done"] for i in everywhere]
    return {
        "offered_rate": rate,
        "seconds": seconds,
        "requests": len(results),
        "served_requests_per_second": round(len(accepted) / (last_done - first_due), 1),
        "latency_ms": summary_ms(latency(r) for r in results),
        "latency_ms_accepted_only": summary_ms(latency(r) for r in accepted.values()),
        "status_counts": dict(Counter(str(r["status"]) for r in results)),
        "generator": {
            "cpu_seconds": round(generator["cpu_seconds"], 2),
            "sending_cpu_seconds": round(generator["sending_cpu_seconds"], 2),
            "cpu_ms_per_request": round(1000 * generator["sending_cpu_seconds"] / len(results), 3),
            "cores_while_sending": round(
                generator["sending_cpu_seconds"] / (last_done - first_due), 3
            ),
            "send_lag_ms": summary_ms(r["lag"] for r in results),
        },
        "processed_events": processed_events,
        "e2e": {
            "events": len(accepted),
            "applied_everywhere": len(everywhere),
            "not_applied_by_destination": missing,
            "drained_in_time": drained,
            "events_per_second": round(len(everywhere) / (end - first_due), 1)
            if everywhere
            else 0.0,
            "latency_ms": summary_ms(e2e),
        },
        "window": [first_due, max(end, time.time())],
        "per_second": _api_series(results, everywhere, accepted, first_due, end),
    }


def _api_series(
    results: list[dict[str, Any]],
    everywhere: dict[str, float],
    accepted: dict[str, dict[str, Any]],
    start: float,
    end: float,
) -> list[dict[str, Any]]:
    """Per second of the run: 202s answered, events applied everywhere, latency percentiles."""
    buckets: dict[int, dict[str, list[float]]] = {}
    for r in results:
        b = buckets.setdefault(
            int(r["done"] - start), {"api": [], "e2e": [], "ok": [], "applied": []}
        )
        b["api"].append(latency(r))
        if r["status"] == 202:
            b["ok"].append(1)
    for event_id, applied in everywhere.items():
        b = buckets.setdefault(
            int(applied - start), {"api": [], "e2e": [], "ok": [], "applied": []}
        )
        b["applied"].append(1)
        sent = buckets.setdefault(
            int(accepted[event_id]["done"] - start), {"api": [], "e2e": [], "ok": [], "applied": []}
        )
        sent["e2e"].append(applied - accepted[event_id]["done"])
    return [
        {
            "t": start + second,
            "accepted": len(b["ok"]),
            "applied_everywhere": len(b["applied"]),
            "api_p50_ms": _ms(percentile(b["api"], 50)),
            "api_p99_ms": _ms(percentile(b["api"], 99)),
            "e2e_p95_ms": _ms(percentile(b["e2e"], 95)),
        }
        for second, b in sorted(buckets.items())
        if 0 <= second <= end - start + 1
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- bursts and the emulator ceiling --------------------------------------------------------------
def pipeline_burst(ctx: Context, count: int) -> dict[str, Any]:
    """``count`` events straight on the pipeline's bus (PutEvents of 10 from 4 threads)."""
    wait_quiet(ctx)
    bus = ctx.env["DATASYNC_EVENT_BUS_NAME"]
    entries = bus_entries(ctx.config.seed + count, count, bus, ctx.run_id)
    ids = {event_id_of(e) for e in entries}
    baseline = ctx.stores.counts()
    result = PutResult()
    ctx.monitor.set_phase(f"burst-{count}", lambda: f"put {len(result.accepted_at)}/{count} |")
    BusPutter(client("events", ctx.env)).burst(entries, result=result)
    drained = wait_applied(ctx, ids, baseline, max(ctx.config.drain_timeout, count / 20))
    everywhere, missing = applied_everywhere(ctx, ids)
    end = max(everywhere.values(), default=time.time())
    seconds = end - result.started
    accepted = {event_id_of(entries[i]): t for i, t in result.accepted_at.items()}
    return {
        "events": count,
        "source": "straight onto the pipeline's bus: PutEvents of 10 from 4 threads (no API)",
        "applied_everywhere": len(everywhere),
        "not_applied_by_destination": missing,
        "drained_in_time": drained,
        "seconds": round(seconds, 2),
        "events_per_second": round(len(everywhere) / seconds, 1) if everywhere else 0.0,
        "put_seconds": round(result.finished - result.started, 2),
        "failed_puts": len(result.failed),
        "latency_ms": summary_ms(everywhere[i] - accepted[i] for i in everywhere if i in accepted),
        "window": [result.started, end],
    }


def ceiling(ctx: Context, count: int) -> dict[str, Any]:
    wait_quiet(ctx)
    ctx.monitor.set_phase(f"ceiling-{count}")
    with Ceiling(ctx.env, drain_threads=ctx.config.ceiling_drain_threads) as fanout:
        result = fanout.run(
            count, seed=ctx.config.seed + count, timeout=max(ctx.config.drain_timeout, count / 20)
        )
    out = result.as_dict()
    out["method"] = (
        f"own bus, 3 rules -> 3 plain SQS queues; PutEvents of 10 from 4 threads; "
        f"one drainer process per queue, {ctx.config.ceiling_drain_threads} threads each, "
        "ReceiveMessage(10) + DeleteMessageBatch, no application code"
    )
    out["window"] = [result.started, result.started + result.seconds]
    return out


# -- sustained run -------------------------------------------------------------------------------
def sustained(ctx: Context, rate: float, seconds: float) -> dict[str, Any]:
    """Events on the pipeline's bus at a fixed rate for ``seconds``: does throughput hold?"""
    wait_quiet(ctx)
    baseline = ctx.stores.counts()
    ids, result = put_at_rate(ctx, rate, seconds, seed=ctx.config.seed + 7, label="sustained")
    count = len(ids)
    drained = wait_applied(ctx, set(ids), baseline, ctx.config.drain_timeout)
    everywhere, missing = applied_everywhere(ctx, set(ids))
    minutes = []
    window = 60 if seconds >= 120 else max(10, seconds / 4)
    for k in range(int(seconds // window)):
        lo, hi = result.started + k * window, result.started + (k + 1) * window
        due = [i for i, e in enumerate(ids) if lo <= result.scheduled_at.get(i, -1) < hi]
        applied_in = sum(1 for t in everywhere.values() if lo <= t < hi)
        minutes.append(
            {
                "from_s": round(k * window),
                "to_s": round((k + 1) * window),
                "offered_per_second": round(len(due) / window, 1),
                "applied_everywhere_per_second": round(applied_in / window, 1),
                "latency_ms": summary_ms(
                    everywhere[ids[i]] - result.scheduled_at[i] for i in due if ids[i] in everywhere
                ),
            }
        )
    first, last = (minutes[0], minutes[-1]) if minutes else ({}, {})
    return {
        "rate": rate,
        "seconds": seconds,
        "events": count,
        "source": "straight onto the pipeline's bus: a PutEvents of 10 every 10/rate s (open loop)",
        "applied_everywhere": len(everywhere),
        "not_applied_by_destination": missing,
        "drained_in_time": drained,
        "put_lag_ms": summary_ms(result.lag),
        "windows": minutes,
        "throughput_last_over_first": _ratio(
            last.get("applied_everywhere_per_second"), first.get("applied_everywhere_per_second")
        ),
        "p95_latency_last_over_first": _ratio(
            (last.get("latency_ms") or {}).get("p95"), (first.get("latency_ms") or {}).get("p95")
        ),
        "window": [result.started, max(everywhere.values(), default=time.time())],
    }


def put_at_rate(
    ctx: Context, rate: float, seconds: float, seed: int, label: str, proxy: str | None = None
) -> tuple[list[str], PutResult]:
    """``rate x seconds`` events on the pipeline's bus, a PutEvents of 10 every 10/rate s (open
    loop); their event ids in order and what the bus answered. ``proxy``: the accounting
    pass's counting proxy, so that these PutEvents are counted like the API's."""
    count = int(rate * seconds)
    bus = ctx.env["DATASYNC_EVENT_BUS_NAME"]
    entries = bus_entries(seed, count, bus, ctx.run_id)
    result = PutResult()
    ctx.monitor.set_phase(label, lambda: f"put {len(result.accepted_at)}/{count} |")
    events = client("events", ctx.env, pool=16, proxy=proxy)
    BusPutter(events).open_loop(entries, rate, result=result)
    return [event_id_of(e) for e in entries], result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
