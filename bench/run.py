"""`python -m bench`: start (or attach to) the stack, run the passes, write the result.

Order: warm-up, the API pass (open loop, the headline API and 202 -> applied figures), the
pipeline burst beside the emulator ceiling at the same size, optional scaling bursts and
sustained run; then the stack stops and the accounting pass runs on a stack of its own behind
the counting proxy; then the cost model and the files: the raw result (every sample), its PNG
and its summary (bench/report.py), under var/bench unless --out says otherwise.
Ctrl-C or SIGTERM at any point stops every stack and process this tool started.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import phases
from bench.accounting import run_accounting
from bench.aws import client
from bench.config import Config, parse, with_result_file
from bench.cost import (
    Usage,
    calls_per_event,
    cost_per_million,
    load_prices,
    records_per_invocation,
    with_aws_batching,
)
from bench.lambdas import invocation_stats, pipeline_functions
from bench.monitor import Monitor, ProcessSampler
from bench.report import (
    RESULT_SCHEMA,
    lowest_ratio,
    summarize,
    summary_text,
    targets,
    validate,
    write_summary,
)
from bench.stack import Stack, attach_stack, start_stack
from bench.stores import Stores
from datasync.local_layout import emulator_batch_limit


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def make_context_factory(config: Config):
    def make(stack: Stack) -> phases.Context:
        sampler = ProcessSampler(groups=stack.process_groups, own={os.getpid(): "bench"})
        monitor = Monitor(
            stack,
            Stores(stack.env, stack.destinations),
            client("sqs", stack.env),
            sampler,
            progress=config.progress,
        )
        ctx = phases.Context(
            config=config, stack=stack, monitor=monitor, stores=monitor.stores, say=say
        )
        monitor.start()
        return ctx

    return make


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    now, checkout = datetime.now(UTC), checkout_info(config)
    config = with_result_file(
        config, checkout["commit"], checkout["uncommitted_changes"] > 0, now.date()
    )
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "started_at": now.isoformat(timespec="seconds"),
        "cores": os.cpu_count() or 1,
        "machine": machine_info(),
        "checkout": checkout,
        "parameters": config.as_dict(),
        "warnings": [],
    }
    started = time.time()
    try:
        measure(config, result)
        if config.accounting:
            account(config, result)
        else:
            result["accounting"] = {"skipped": "--no-accounting (BENCH_ACCOUNTING=0)"}
    except KeyboardInterrupt:
        say("interrupted: every stack this tool started has been stopped")
        return 130
    result["machine"]["load_average_after"] = _load()
    result["tool_seconds"] = round(time.time() - started, 1)
    finish(config, result)
    return 0 if not result["problems"] else 1


def measure(config: Config, result: dict[str, Any]) -> None:
    make_context = make_context_factory(config)
    stack = (
        start_stack(
            config.repo, config.var_dir / "main", build_dir=config.var_dir / "build", say=say
        )
        if config.stack == "start"
        else attach_stack(config.env_file, config.api_url)
    )
    try:
        destinations = ", ".join(stack.destinations)
        say(f"stack ready: API {stack.api_url}, emulator {stack.endpoint}, {destinations}")
        # The pipeline's figures depend on it (README, "MiniStack's batch limit"): say which.
        result["emulator"] = {
            "event_source_mapping_batch_limit": emulator_batch_limit(stack.emulator_log)
        }
        ctx = make_context(stack)
        try:
            run_passes(ctx, result)
        finally:
            ctx.monitor.stop()
            ctx.stores.close()
            result["timeseries"] = ctx.monitor.samples
            result["peak_rss"] = ctx.monitor.sampler.peak_rss_mb()
    finally:
        if stack.launched is not None:
            say("stopping the stack ...")
            stack.stop()


def run_passes(ctx: phases.Context, result: dict[str, Any]) -> None:
    config = ctx.config
    if config.warmup_seconds > 0:
        say(f"warm-up: {min(config.rate, 50):.0f} req/s for {config.warmup_seconds:.0f} s")
        phases.api_pass(ctx, min(config.rate, 50.0), config.warmup_seconds, label="warmup")
        phases.wait_quiet(ctx)
    say(f"API pass: {config.rate:.0f} req/s for {config.seconds:.0f} s, open loop")
    api = phases.api_pass(ctx, config.rate, config.seconds)
    result["api"] = api
    start, end = api["window"]  # from the first due request until the pipeline was quiet
    cpu = ctx.monitor.cpu_seconds(start, end)
    events = max(1, api["processed_events"])
    result["cpu_ms_per_event"] = {k: round(1000 * v / events, 3) for k, v in sorted(cpu.items())}
    result["cpu_cores_used"] = {k: round(v / (end - start), 3) for k, v in sorted(cpu.items())}
    result["lambda"] = lambda_figures(ctx, start, end, events)
    if config.burst:
        say(f"burst of {config.burst} on the bus, then the emulator ceiling at the same size")
        result["burst"] = burst_with_cpu(ctx, config.burst)
        result["ceiling"] = ceiling_with_cpu(ctx, config.burst)
    if config.scaling:
        result["scaling"] = []
        for size in config.scaling_sizes:
            say(f"scaling: burst of {size}, then the ceiling at {size}")
            pipeline = burst_with_cpu(ctx, size)
            fanout = ceiling_with_cpu(ctx, size)
            result["scaling"].append(
                {
                    "events": size,
                    "pipeline_events_per_second": pipeline["events_per_second"],
                    "ceiling_events_per_second": fanout["events_per_second"],
                    "ratio": round(pipeline["events_per_second"] / fanout["events_per_second"], 3)
                    if fanout["events_per_second"]
                    else None,
                    "pipeline": pipeline,
                    "ceiling": fanout,
                }
            )
    if config.sustained_seconds > 0:
        rate, seconds = config.sustained_rate, config.sustained_seconds
        say(f"sustained: {rate:.0f} events/s on the bus for {seconds:.0f} s")
        result["sustained"] = phases.sustained(ctx, config.sustained_rate, config.sustained_seconds)


def burst_with_cpu(ctx: phases.Context, count: int) -> dict[str, Any]:
    """A burst, with what it cost: the machine's busy cores, each kind's CPU per event, and how
    full the emulator filled the Lambdas' batches. These say what bounds the pipeline's rate."""
    burst = phases.pipeline_burst(ctx, count)
    start, end = burst["window"]
    burst["cpu"] = ctx.monitor.phase_cpu(start, end, count)
    burst["lambda"] = lambda_figures(ctx, start, end, count)
    return burst


def ceiling_with_cpu(ctx: phases.Context, count: int) -> dict[str, Any]:
    """The emulator ceiling, with the same CPU figures as a burst (its drainers included)."""
    fanout = phases.ceiling(ctx, count)
    start, end = fanout["window"]
    fanout["cpu"] = ctx.monitor.phase_cpu(start, end, count)
    drainers = fanout.get("drainer_cpu_seconds")
    if drainers is not None:
        fanout["cpu"]["ms_per_event"]["ceiling_drainers"] = round(1000 * drainers / count, 3)
    return fanout


def lambda_figures(ctx: phases.Context, start: float, end: float, events: int) -> dict[str, Any]:
    functions = pipeline_functions(client("lambda", ctx.env))
    names = [f["FunctionName"] for f in functions]
    stats = invocation_stats(client("logs", ctx.env), names, start, end + 5)
    stats["invocations_per_event"] = round(stats["invocations"] / events, 4)
    stats["memory_mb"] = int(functions[0].get("MemorySize", 128)) if functions else None
    return stats


def account(config: Config, result: dict[str, Any]) -> None:
    accounting = run_accounting(config, make_context_factory(config), say)
    result["accounting"] = accounting
    # The API window's invocations were timed through the proxy; the main pass's were not.
    main_duration = (result.get("lambda") or {}).get("mean_duration_ms")
    usage = usage_of(accounting, accounting, main_duration)
    result["aws_calls_per_event"] = calls_per_event(accounting["counted"], accounting["events"])
    prices = load_prices()
    result["cost"] = cost_per_million(usage, prices)
    result["cost"]["with_aws_batching"] = with_aws_batching(
        usage,
        prices,
        rate=accounting["rate"],
        batch_size=accounting["lambda"].get("batch_size"),
        window_seconds=accounting["lambda"].get("batching_window_seconds"),
    )
    result["cost_per_million_events_usd"] = result["cost"]["per_million_events_usd"]
    bus = accounting.get("on_the_bus")
    if bus and bus["events"] > 0:
        bus_usage = usage_of(bus, accounting)
        per_invocation = records_per_invocation(bus_usage)
        result["cost"]["on_the_bus"] = {
            "rate": bus["rate"],
            "records_per_invocation": round(per_invocation, 2) if per_invocation else None,
            **cost_per_million(bus_usage, prices),
        }


def usage_of(
    window: dict[str, Any], accounting: dict[str, Any], duration_ms: float | None = None
) -> Usage:
    """What one counted window used; the bus and archive shape come from the accounting pass."""
    lam = window["lambda"]
    return Usage(
        events=window["events"],
        counted=window["counted"],
        bus_targets_per_event=accounting["bus_sqs_targets"],
        lambda_invocations=lam["invocations"],
        lambda_mean_duration_ms=duration_ms or lam["mean_duration_ms"],
        lambda_memory_mb=lam["memory_mb"],
        lambda_architecture=lam["architecture"],
        lambda_log_bytes=lam["log_bytes"],
        lambda_platform_log_bytes=lam.get("platform_log_bytes", 0),
        lambda_system_log_level=lam.get("system_log_level", "INFO"),
        archive_retention_days=accounting["archive_retention_days"],
        idle_calls_per_second=accounting["idle_calls_per_second"],
        event_source_mappings=len(lam.get("names") or []) or None,
    )


def finish(config: Config, result: dict[str, Any]) -> None:
    api, burst, ceiling = result.get("api") or {}, result.get("burst"), result.get("ceiling")
    if not burst and result.get("scaling"):  # no default burst: the largest scaling pair
        largest = max(result["scaling"], key=lambda row: row["events"])
        burst, ceiling = largest["pipeline"], largest["ceiling"]
    if burst:
        result["e2e_events_per_minute"] = round(burst["events_per_second"] * 60)
        result["e2e_events_per_minute_source"] = f"burst of {burst['events']} events on the bus"
    else:
        result["e2e_events_per_minute"] = round(api["e2e"]["events_per_second"] * 60)
        result["e2e_events_per_minute_source"] = "API pass (bounded by the offered rate)"
    result["e2e_latency_ms"] = api["e2e"]["latency_ms"]
    result["api_requests_per_second"] = api["served_requests_per_second"]
    result["api_latency_ms"] = api["latency_ms"]
    result["api_errors"] = {k: v for k, v in api["status_counts"].items() if k != "202"}
    result["emulator_ceiling_events_per_second"] = ceiling["events_per_second"] if ceiling else None
    result["pipeline_to_ceiling_ratio"] = (
        round(burst["events_per_second"] / ceiling["events_per_second"], 3)
        if burst and ceiling and ceiling["events_per_second"]
        else None
    )
    result["lowest_pipeline_to_ceiling_ratio"] = lowest_ratio(result)
    result.setdefault("aws_calls_per_event", None)
    result.setdefault("cost_per_million_events_usd", None)
    result["peak_rss_mb"] = {k: v["total"] for k, v in result.get("peak_rss", {}).items()}
    result["tool_overhead"] = overhead(result)
    result["targets"] = targets(result)
    result["warnings"] += warnings(result)
    result["problems"] = validate(result)
    try:
        from bench.plot import plot

        result["plot"] = str(plot(result, config.plot))
    except Exception as exc:  # noqa: BLE001 - the JSON is the result; a plot failure is reported
        result["warnings"].append(f"no plot: {type(exc).__name__}: {exc}")
    phases.write_json(config.result_file, _ordered(result))
    plot_name = config.plot.name if result.get("plot") else None
    summary = summarize(result, raw=config.result_file.name, plot=plot_name)
    write_summary(summary, config.summary)
    print(summary_text(summary))
    written = [config.result_file, *([config.plot] if plot_name else []), config.summary]
    print("wrote " + ", ".join(str(path) for path in written))
    print(
        f"to keep this run in the repository: {_shown(Path(sys.executable))} -m bench summarize"
        f" {_shown(config.result_file)} --to docs/bench (its summary and PNG; the raw result"
        " stays where it is)"
    )
    for problem in result["problems"]:
        print(f"PROBLEM   {problem}")


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def overhead(result: dict[str, Any]) -> dict[str, Any]:
    api = result.get("api") or {}
    cores = result.get("cpu_cores_used") or {}
    queues = sum(
        1 for s in result.get("timeseries", [])[-1:] for d in s.get("depth", {}).values() for _ in d
    )
    return {
        "load_generator_cores": cores.get("load_generator"),
        "load_generator_cpu_ms_per_request": (api.get("generator") or {}).get("cpu_ms_per_request"),
        "monitor_cores": cores.get("bench"),
        "monitor_emulator_calls_per_second": queues,
        "note": "the monitor makes one GetQueueAttributes per queue per second against the "
        "emulator and one count(*) per store; the proxy runs only in the accounting pass",
    }


def warnings(result: dict[str, Any]) -> list[str]:
    out = []
    cores = result["cores"]
    before = (result.get("machine") or {}).get("load_average_before") or [0]
    if before[0] > 0.5 * cores:
        out.append(
            f"the machine was busy before the run (1-min load average {before[0]} on {cores} "
            "cores): other work shared the cores, so the figures are noisy"
        )
    lag = ((result.get("api") or {}).get("generator") or {}).get("send_lag_ms") or {}
    if (lag.get("p99") or 0) > 5:
        out.append(
            f"the load generator sent late (lag p99 {lag['p99']} ms): latencies include its delay"
        )
    accounting = result.get("accounting") or {}
    refused = {k: v for k, v in (accounting.get("status_counts") or {}).items() if k != "202"}
    if refused:
        out.append(
            f"accounting pass: requests not accepted {refused}: its stack was saturated, so "
            "batches were fuller than at a healthy rate; lower BENCH_ACCOUNTING_RATE"
        )
    for name in ("api", "burst", "sustained"):
        section = result.get(name) or {}
        e2e = section.get("e2e", section)
        if e2e and e2e.get("drained_in_time") is False:
            out.append(
                f"{name}: not every event was applied within the drain timeout: "
                f"{e2e.get('not_applied_by_destination')}"
            )
    return out


def _ordered(result: dict[str, Any]) -> dict[str, Any]:
    """Headline fields first, bulky ones (time series) last."""
    head = [
        "schema",
        "started_at",
        "cores",
        "e2e_events_per_minute",
        "e2e_events_per_minute_source",
        "e2e_latency_ms",
        "api_requests_per_second",
        "api_latency_ms",
        "api_errors",
        "aws_calls_per_event",
        "cost_per_million_events_usd",
        "emulator_ceiling_events_per_second",
        "pipeline_to_ceiling_ratio",
        "lowest_pipeline_to_ceiling_ratio",
        "peak_rss_mb",
        "cpu_ms_per_event",
        "targets",
        "warnings",
        "problems",
        "parameters",
        "machine",
        "checkout",
        "emulator",
    ]
    tail = ["timeseries"]
    ordered = {k: result[k] for k in head if k in result}
    ordered.update({k: v for k, v in result.items() if k not in head and k not in tail})
    ordered.update({k: result[k] for k in tail if k in result})
    return ordered


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                "",
            )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average_before": _load(),
    }


def checkout_info(config: Config) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(  # noqa: S603 - git with our own arguments
                ["git", "-C", str(config.repo), *args],  # noqa: S607 - git from PATH
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {
        "repo": str(config.repo),
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "uncommitted_changes": len(changed.splitlines()) if changed else 0,
    }
