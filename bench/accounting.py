"""The accounting pass: a stack of its own whose every client talks through the counting proxy.

It runs after the throughput passes (and after their stack stopped), so the proxy never slows
what they measure. The stack is a `datasync up` like the other, started with
``HTTP_PROXY`` pointing at ``python -m bench.proxy``: the API and consumers inherit it, so
does MiniStack and through it every Lambda worker it spawns (their boto3 honours it; Terraform,
written in Go, never proxies loopback addresses). Counted: an idle window (what an idle
pipeline costs) and a load window from the first request until every event is applied and every
queue is empty again.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from bench.aws import client
from bench.config import TOOL_ROOT, Config
from bench.lambdas import invocation_stats, pipeline_functions
from bench.stack import Stack, start_stack
from datasync.local_layout import free_port

T = TypeVar("T")
PROXY_ENV = ("HTTP_PROXY", "http_proxy")
DROPPED_ENV = ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class CountingProxy:
    def __init__(self, lifetime: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "bench.proxy",
                "--port",
                str(self.port),
                "--lifetime",
                str(lifetime),
            ],
            cwd=TOOL_ROOT,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                self.snapshot()
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the counting proxy did not start")

    def snapshot(self) -> list[dict[str, Any]]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/_bench/snapshot", timeout=5) as response:
            return json.load(response)["counts"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def diff(after: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counts in ``after`` minus those in ``before`` (rows keyed by service, operation, caller)."""

    def key(row: dict[str, Any]) -> tuple[str, str, str]:
        return row["service"], row["operation"], row["caller"]

    earlier = {key(r): r for r in before}
    rows = []
    for row in after:
        base = earlier.get(key(row), {})
        delta = {k: v - base.get(k, 0) for k, v in row.items() if isinstance(v, int)}
        if delta.get("calls"):
            rows.append(
                {
                    "service": row["service"],
                    "operation": row["operation"],
                    "caller": row["caller"],
                    **delta,
                }
            )
    return rows


def bus_sqs_targets(env: dict[str, str]) -> int:
    """How many SQS targets the pipeline bus's rules deliver every live event to (a rule for
    replayed events only, such as a destination's own, does not count)."""
    events = client("events", env)
    bus = env["DATASYNC_EVENT_BUS_NAME"]
    targets = 0
    for rule in events.list_rules(EventBusName=bus).get("Rules", []):
        if replays_only(rule.get("EventPattern")):
            continue
        for target in events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus).get(
            "Targets", []
        ):
            targets += ":sqs:" in target["Arn"]
    return targets


def replays_only(pattern: str | None) -> bool:
    """Whether an event pattern matches replayed events alone ({"replay-name": [{"exists":
    true}]}, which a live event, having no replay-name, never matches)."""
    try:
        return json.loads(pattern or "{}").get("replay-name") == [{"exists": True}]
    except (ValueError, AttributeError):
        return False


def archive_retention_days(env: dict[str, str]) -> int | None:
    arn = env.get("DATASYNC_ARCHIVE_ARN")
    if not arn:
        return None
    try:
        return int(
            client("events", env).describe_archive(ArchiveName=arn.rsplit("/", 1)[-1])[
                "RetentionDays"
            ]
        )
    except Exception:  # noqa: BLE001 - no archive read-back: leave the archive out of the cost
        return None


def lambda_shape(env: dict[str, str]) -> dict[str, Any]:
    lambda_client = client("lambda", env)
    functions = pipeline_functions(lambda_client)
    if not functions:
        return {"names": [], "memory_mb": 128, "architecture": "x86_64", "system_log_level": "INFO"}
    logging_config = functions[0].get("LoggingConfig") or {}
    mappings = lambda_client.list_event_source_mappings(
        FunctionName=functions[0]["FunctionName"]
    ).get("EventSourceMappings") or [{}]
    return {
        # What the mapping asks AWS for (the emulator ignores the window and caps batches at 10).
        "batch_size": mappings[0].get("BatchSize"),
        "batching_window_seconds": mappings[0].get("MaximumBatchingWindowInSeconds"),
        "names": [f["FunctionName"] for f in functions],
        "memory_mb": int(functions[0].get("MemorySize", 128)),
        "architecture": (functions[0].get("Architectures") or ["x86_64"])[0],
        # Lambda filters its own lines by level only in JSON format (Text sends them all).
        "system_log_level": logging_config.get("SystemLogLevel", "INFO")
        if logging_config.get("LogFormat") == "JSON"
        else "INFO",
    }


def run_accounting(config: Config, make_context, say) -> dict[str, Any]:
    """Start the proxied stack, count an idle window, the API window and (if asked) a window
    on the bus at ``accounting_bus_rate``; stop everything again."""
    from bench import phases

    proxy = CountingProxy(lifetime=3600)
    stack: Stack | None = None
    var_dir = config.var_dir / "accounting"
    try:
        say(f"accounting pass: starting a second stack behind the counting proxy ({proxy.url})")
        stack = start_stack(
            config.repo,
            var_dir,
            extra_env=dict.fromkeys(PROXY_ENV, proxy.url),
            drop_env=DROPPED_ENV,
            build_dir=config.var_dir / "build",
            say=say,
        )
        ctx = make_context(stack)
        try:
            phases.api_pass(ctx, min(20.0, config.rate), 5, label="accounting-warmup")
            phases.wait_quiet(ctx)
            before_idle = proxy.snapshot()
            ctx.monitor.set_phase("accounting-idle")
            time.sleep(config.accounting_idle_seconds)
            idle = diff(proxy.snapshot(), before_idle)
            shape = lambda_shape(stack.env)
            window, load = count_window(
                ctx,
                proxy,
                shape,
                lambda: phases.api_pass(
                    ctx, config.accounting_rate, config.accounting_seconds, label="accounting"
                ),
            )
            result = {
                **window,
                "accepted": load["e2e"]["events"],
                "status_counts": load["status_counts"],
                "rate": config.accounting_rate,
                "seconds": config.accounting_seconds,
                "idle_seconds": config.accounting_idle_seconds,
                "idle_counted": idle,
                "idle_calls_per_second": _per_second(idle, config.accounting_idle_seconds),
                "bus_sqs_targets": bus_sqs_targets(stack.env),
                "archive_retention_days": archive_retention_days(stack.env),
                "not_visible": [
                    "EventBridge -> buffer queue deliveries (inside the emulator; modelled)",
                    "the event source mapping's ReceiveMessage/DeleteMessageBatch (modelled)",
                    "Lambda invocations themselves (read from the REPORT lines the emulator logs)",
                ],
            }
            if config.accounting_bus_rate > 0:
                result["on_the_bus"] = _bus_window(ctx, proxy, config, shape)
            return result
        finally:
            ctx.monitor.stop()
            ctx.stores.close()
    finally:
        if stack is not None:
            say("accounting pass: stopping its stack")
            stack.stop()
        proxy.stop()


def count_window(
    ctx, proxy: CountingProxy, shape: dict[str, Any], drive: Callable[[], T]
) -> tuple[dict[str, Any], T]:
    """The calls counted while ``drive()`` ran and the pipeline then emptied, per event that
    entered it, with the functions' shape and what the emulator logged about them in that
    window; and what ``drive()`` returned."""
    from bench import phases

    before, applied_before = proxy.snapshot(), ctx.stores.counts()
    started = time.time()
    driven = drive()
    phases.wait_quiet(ctx)
    ended = time.time()
    logged = invocation_stats(client("logs", ctx.env), shape["names"], started, ended)
    window = {
        # Per event of what entered the pipeline: a request the generator gave up on may
        # still have been published (and its calls counted).
        "events": phases.processed(applied_before, ctx.stores.counts()),
        "window_seconds": round(ended - started, 1),
        "counted": diff(proxy.snapshot(), before),
        "lambda": {**shape, **logged},
    }
    return window, driven


def _bus_window(ctx, proxy: CountingProxy, config: Config, shape: dict[str, Any]) -> dict[str, Any]:
    """The same count at the throughput target's rate, the events put straight on the bus (the
    API cannot serve that rate on 2 cores with the pipeline beside it). Batches fill with the
    rate, so this shows how the cost per event falls as load rises."""
    from bench import phases

    window, (ids, put) = count_window(
        ctx,
        proxy,
        shape,
        lambda: phases.put_at_rate(
            ctx,
            config.accounting_bus_rate,
            config.accounting_seconds,
            seed=config.seed + 11,
            label="accounting-bus",
            proxy=proxy.url,
        ),
    )
    for row in window["counted"]:
        if row["caller"] == "other":  # the tool's own PutEvents, through the proxy
            row["caller"] = "bus_publisher"
    return {
        **window,
        "put": len(ids),  # events: those applied everywhere, as in the API window
        "accepted": len(put.accepted_at),
        "rate": config.accounting_bus_rate,
        "seconds": config.accounting_seconds,
        "source": "straight onto the pipeline's bus: a PutEvents of 10 every 10/rate s (open loop)",
    }


def _per_second(rows: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    rates: dict[str, float] = {}
    for row in rows:
        if row["service"] != "unsigned":
            key = f"{row['service']}:{row['operation']}"
            rates[key] = round(rates.get(key, 0.0) + row["calls"] / seconds, 4)
    return rates
