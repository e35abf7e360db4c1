"""A run's result: its required fields checked, the targets compared, and its summary.

The result (`make bench`'s raw JSON, under var/bench) holds every sample. The summary is the
part of it worth keeping in the repository: the figures BENCHMARKS.md quotes, the targets'
verdicts and the run's conditions, a few KB whatever the run's length. It is defined here,
once (``SUMMARY``), written here (``write_summary``), and the text the tool prints is
rendered from it (``summary_text``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

PERCENTILES = ("p50", "p95", "p99")
REQUIRED = (
    "e2e_events_per_minute",
    "e2e_latency_ms",
    "api_requests_per_second",
    "api_latency_ms",
    "aws_calls_per_event",
    "cost_per_million_events_usd",
    "emulator_ceiling_events_per_second",
    "peak_rss_mb",
    "cores",
    "parameters",
)
# The performance targets, as (field, comparison, bound, what it means).
TARGETS = (
    ("e2e_events_per_minute", ">=", 30_000, "end to end >= 30,000 events/minute"),
    (
        "lowest_pipeline_to_ceiling_ratio",
        ">=",
        0.8,
        ">= 0.8 of the emulator ceiling at every burst size measured",
    ),
    ("e2e_latency_ms.p95", "<=", 2000, "p95 202 -> applied <= 2 s"),
    ("api_latency_ms.p99", "<=", 50, "API p99 <= 50 ms (at the offered rate)"),
    ("cost_per_million_events_usd", "<=", 3.0, "<= $3 per million events"),
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(result: dict[str, Any]) -> list[str]:
    """What is missing or not sane in a result; [] when it is complete.

    The accounting fields may be null only when the result says why (``accounting.skipped``),
    the ceiling only when the run was asked for no burst (``BENCH_BURST=0``, no scaling).
    """
    problems = [f"missing {name}" for name in REQUIRED if name not in result]
    skipped = bool((result.get("accounting") or {}).get("skipped"))
    parameters = result.get("parameters") or {}
    no_burst = parameters.get("burst") == 0 and not parameters.get("scaling")
    for name in (
        "e2e_events_per_minute",
        "api_requests_per_second",
        "emulator_ceiling_events_per_second",
    ):
        if name == "emulator_ceiling_events_per_second" and result.get(name) is None and no_burst:
            continue
        if name in result and not (_number(result[name]) and result[name] > 0):
            problems.append(f"{name} must be a positive number, got {result[name]!r}")
    for name in ("e2e_latency_ms", "api_latency_ms"):
        if name in result:
            problems += _percentile_problems(name, result[name])
    calls = result.get("aws_calls_per_event")
    if "aws_calls_per_event" in result and not (calls is None and skipped):
        if not (
            isinstance(calls, dict)
            and _number(calls.get("total"))
            and calls["total"] > 0
            and calls.get("by_operation")
        ):
            problems.append(
                f"aws_calls_per_event needs a positive total and by_operation, got {calls!r}"
            )
    cost = result.get("cost_per_million_events_usd")
    if "cost_per_million_events_usd" in result and not (cost is None and skipped):
        if not (_number(cost) and cost > 0):
            problems.append(f"cost_per_million_events_usd must be a positive number, got {cost!r}")
    rss = result.get("peak_rss_mb")
    if "peak_rss_mb" in result:
        for kind in ("api", "consumers"):
            if not (isinstance(rss, dict) and _number(rss.get(kind)) and rss[kind] > 0):
                problems.append(f"peak_rss_mb.{kind} must be a positive number")
    if "cores" in result and not (isinstance(result["cores"], int) and result["cores"] >= 1):
        problems.append("cores must be a positive integer")
    if "parameters" in result and not isinstance(result["parameters"], dict):
        problems.append("parameters must be an object")
    return problems


def _percentile_problems(name: str, value: Any) -> list[str]:
    if not isinstance(value, dict) or not all(_number(value.get(p)) for p in PERCENTILES):
        return [f"{name} needs numeric p50, p95 and p99, got {value!r}"]
    p50, p95, p99 = (value[p] for p in PERCENTILES)
    if not 0 <= p50 <= p95 <= p99:
        return [f"{name} percentiles must satisfy 0 <= p50 <= p95 <= p99, got {p50}, {p95}, {p99}"]
    return []


def lookup(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def lowest_ratio(result: dict[str, Any]) -> float | None:
    """The target is 0.8 of the ceiling at every burst size: the lowest ratio measured."""
    ratios = [
        result.get("pipeline_to_ceiling_ratio"),
        *(row.get("ratio") for row in result.get("scaling") or []),
    ]
    measured = [ratio for ratio in ratios if _number(ratio)]
    return min(measured) if measured else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for field, op, bound, meaning in TARGETS:
        value = lookup(result, field)
        met = None if not _number(value) else (value >= bound if op == ">=" else value <= bound)
        rows.append(
            {
                "target": meaning,
                "field": field,
                "value": value,
                "bound": f"{op} {bound}",
                "met": met,
            }
        )
    return rows


def _p(d: dict[str, Any] | None) -> str:
    if not d or d.get("p50") is None:
        return "n/a"
    return f"p50 {d['p50']:.0f} / p95 {d['p95']:.0f} / p99 {d['p99']:.0f} ms"


def _api_lines(result: dict[str, Any]) -> list[str]:
    api = result.get("api")
    if not api:
        return []
    errors = {k: v for k, v in api.get("status_counts", {}).items() if k != "202"}
    gen, e2e = api.get("generator", {}), api["e2e"]
    return [
        f"API       {api['offered_rate']:.0f} req/s offered for {api['seconds']:.0f} s "
        f"(open loop): {api['served_requests_per_second']} req/s served, "
        f"{_p(api.get('latency_ms'))}, errors: {errors or 'none'}",
        f"          load generator {gen.get('cpu_ms_per_request')} ms CPU/request, "
        f"send lag {_p(gen.get('send_lag_ms'))}",
        f"E2E       API pass: {e2e['applied_everywhere']}/{e2e['events']} applied everywhere, "
        f"202 -> applied {_p(e2e.get('latency_ms'))}",
    ]


def _throughput_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    burst, ceiling = result.get("burst"), result.get("ceiling")
    if burst and ceiling:
        lines.append(
            f"          burst of {burst['events']} on the bus: {burst['events_per_second']} "
            f"events/s ({result.get('e2e_events_per_minute')}/min); emulator ceiling "
            f"{ceiling['events_per_second']} events/s;"
            f" ratio {result.get('pipeline_to_ceiling_ratio')}"
        )
    if burst and ceiling:
        lines += [_cpu_line("pipeline", burst), _cpu_line("ceiling", ceiling)]
    for row in result.get("scaling") or []:
        lines.append(
            f"          scaling {row['events']:>6}: pipeline {row['pipeline_events_per_second']}"
            f" events/s, ceiling {row['ceiling_events_per_second']}, ratio {row['ratio']}"
        )
        lines += [_cpu_line("pipeline", row["pipeline"]), _cpu_line("ceiling", row["ceiling"])]
    sustained = result.get("sustained")
    if sustained:
        lines.append(
            f"          sustained {sustained['rate']:.0f}/s for {sustained['seconds']:.0f} s: "
            f"{sustained['applied_everywhere']}/{sustained['events']} applied; last/first window:"
            f" throughput {sustained['throughput_last_over_first']},"
            f" p95 {sustained['p95_latency_last_over_first']}"
        )
    return lines


def _cpu_line(label: str, phase: dict[str, Any]) -> str:
    """Where a burst's or a ceiling's CPU went: the evidence of what bounds its rate."""
    cpu = phase.get("cpu") or {}
    per_event = cpu.get("ms_per_event") or {}
    invocations = (phase.get("lambda") or {}).get("invocations_per_event")
    return (
        f"            {label:<8} {cpu.get('cores_busy')} cores busy"
        f" ({cpu.get('machine_ms_per_event')} ms CPU/event, whole machine); by kind "
        + ", ".join(f"{k} {v}" for k, v in per_event.items() if v)
        + (f"; {invocations} Lambda invocations/event" if invocations is not None else "")
    )


def _aws_line(result: dict[str, Any]) -> str:
    calls = result.get("aws_calls_per_event")
    if not calls:
        return f"AWS       not counted: {(result.get('accounting') or {}).get('skipped')}"
    cost = result.get("cost") or {}
    top = sorted(calls["by_operation"].items(), key=lambda kv: -kv[1]["calls"])[:6]
    estimate = cost.get("with_aws_batching") or {}
    bus = cost.get("on_the_bus") or {}
    return (
        f"AWS       {calls['total']} calls/event counted at"
        f" {result['accounting']['rate']:g} req/s through the API ("
        + ", ".join(f"{k} {v['calls']:.2f}" for k, v in top)
        + f"); ${result.get('cost_per_million_events_usd')} per million events"
        f" ({cost.get('region')} list prices checked {cost.get('prices_checked')})"
        + (
            f"\n          estimate with AWS's Lambda batches"
            f" ({estimate['records_per_invocation']['aws']:.0f} records per invocation, not"
            f" {estimate['records_per_invocation']['measured']}):"
            f" ${estimate['per_million_events_usd']} per million events"
            if estimate
            else ""
        )
        + (
            f"\n          counted at {bus['rate']:g} events/s put on the bus"
            f" ({bus['records_per_invocation']} records per invocation):"
            f" ${bus['per_million_events_usd']} per million events"
            if bus
            else ""
        )
    )


def _met(target: dict[str, Any]) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[target["met"]] + f" ({target['value']})"


def _emulator(result: dict[str, Any]) -> str:
    limit = (result.get("emulator") or {}).get("event_source_mapping_batch_limit")
    if limit is None:
        return "emulator's Lambda batch limit unknown (not a MiniStack of ours)"
    return f"emulator's Lambda batches up to {limit} records"


def summary_text(summary: dict[str, Any]) -> str:
    """The lines the tool prints at the end of a run, from its summary.

    A whole result reads the same (a summary keeps every field these lines use; a test holds it).
    """
    machine = summary.get("machine") or {}
    cpu = summary.get("cpu_ms_per_event") or {}
    rss = summary.get("peak_rss_mb") or {}
    lines = [
        f"datasync bench: {summary.get('cores')} cores, load average "
        f"{machine.get('load_average_before')} before / {machine.get('load_average_after')} "
        f"after; checkout {(summary.get('checkout') or {}).get('commit')}; {_emulator(summary)}",
        *_api_lines(summary),
        *_throughput_lines(summary),
        _aws_line(summary),
        "CPU       ms per event: " + ", ".join(f"{k} {v}" for k, v in cpu.items()),
        "Memory    peak RSS (sum of VmHWM): " + ", ".join(f"{k} {v} MB" for k, v in rss.items()),
        "Targets   " + "; ".join(f"{t['target']}: {_met(t)}" for t in summary.get("targets", [])),
    ]
    lines += [f"WARNING   {warning}" for warning in summary.get("warnings", [])]
    return "\n".join(lines)


# -- the summary ---------------------------------------------------------------------------------
SUMMARY_SCHEMA = "datasync-bench-summary/1"
RESULT_SCHEMA = "datasync-bench/1"
KEEP = True
# A spec says what a summary keeps of a result, key by key: KEEP keeps the value whole, a dict
# keeps those of its keys (recursively), a list of one spec applies it to every item, a
# function returns what to keep. Keys a result lacks (older runs) are left out. The series (the
# one-second time series, the API pass's per-second rows) are what is not kept.
Spec = bool | dict[str, Any] | list[Any] | Callable[[Any], Any]


def _keep(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, KEEP)


def _columns(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """A sustained run's windows as columns, one value per window: ~40 bytes a window."""
    latency = [w.get("latency_ms") or {} for w in windows]
    return {
        "seconds": (windows[0]["to_s"] - windows[0]["from_s"]) if windows else None,
        "applied_everywhere_per_second": [w["applied_everywhere_per_second"] for w in windows],
        "latency_ms": {p: [x.get(p) for x in latency] for p in ("p50", "p95", "p99", "max")},
    }


_LAMBDA_PHASE = _keep(
    "invocations", "invocations_per_event", "mean_duration_ms", "max_duration_ms", "memory_mb"
)
# The accounting windows': what the cost model priced.
_LAMBDA = {
    **_LAMBDA_PHASE,
    **_keep("log_bytes", "platform_log_bytes", "batch_size", "batching_window_seconds"),
    **_keep("architecture", "system_log_level"),
}
# A burst or a ceiling; a scaling row's pair is the same without the text of how it was put.
_PHASE = {
    **_keep(
        "events",
        "source",
        "method",
        "applied_everywhere",
        "not_applied_by_destination",
        "drained_in_time",
        "seconds",
        "events_per_second",
        "put_seconds",
        "failed_puts",
        "latency_ms",
        "delivered_per_queue",
        "drainer_cpu_seconds",
        "cpu",
    ),
    "lambda": _LAMBDA_PHASE,
}
_SCALED = {key: spec for key, spec in _PHASE.items() if key not in ("source", "method")}
_COST = {
    **_keep(
        "per_million_events_usd",
        "rate",
        "records_per_invocation",
        "fixed_monthly_usd",
        "not_priced",
        "region",
        "prices_checked",
        "basis",
    ),
    "lines": [_keep("item", "usd", "basis")],
}
# The estimate with AWS's batches and the window on the bus: their totals and lines' amounts.
_OTHER_COST = {
    **_keep("per_million_events_usd", "rate", "records_per_invocation"),
    "lines": [_keep("item", "usd")],
}
_WINDOW = _keep("events", "accepted", "status_counts", "rate", "seconds", "window_seconds")
SUMMARY: dict[str, Any] = {
    **_keep(
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
    ),
    # The conditions: what was offered for how long, on what, measuring which checkout.
    "parameters": _keep(
        "label",
        "stack",
        "rate",
        "seconds",
        "warmup_seconds",
        "burst",
        "scaling",
        "scaling_sizes",
        "sustained_seconds",
        "sustained_rate",
        "accounting",
        "accounting_rate",
        "accounting_bus_rate",
        "accounting_seconds",
        "accounting_idle_seconds",
        "ceiling_drain_threads",
        "drain_timeout",
        "seed",
    ),
    "machine": KEEP,
    "checkout": _keep("commit", "uncommitted_changes"),
    "emulator": KEEP,
    "api": {
        **_keep(
            "offered_rate",
            "seconds",
            "requests",
            "served_requests_per_second",
            "latency_ms",
            "status_counts",
            "generator",
            "processed_events",
        ),
        "e2e": _keep(
            "events",
            "applied_everywhere",
            "not_applied_by_destination",
            "drained_in_time",
            "events_per_second",
            "latency_ms",
        ),
    },
    "cpu_cores_used": KEEP,
    "lambda": _LAMBDA,
    "burst": _PHASE,
    "ceiling": _PHASE,
    "scaling": [
        {
            **_keep("events", "pipeline_events_per_second", "ceiling_events_per_second", "ratio"),
            "pipeline": _SCALED,
            "ceiling": _SCALED,
        }
    ],
    "sustained": {
        **_keep(
            "rate",
            "seconds",
            "events",
            "source",
            "applied_everywhere",
            "not_applied_by_destination",
            "drained_in_time",
            "put_lag_ms",
            "throughput_last_over_first",
            "p95_latency_last_over_first",
        ),
        "windows": _columns,
    },
    "peak_rss": KEEP,
    "accounting": {
        **_WINDOW,
        **_keep("skipped", "idle_seconds", "idle_calls_per_second"),
        **_keep("bus_sqs_targets", "archive_retention_days"),
        "lambda": _LAMBDA,
        "on_the_bus": {**_WINDOW, "lambda": _LAMBDA},
    },
    "cost": {**_COST, "with_aws_batching": _OTHER_COST, "on_the_bus": _OTHER_COST},
    "tool_seconds": KEEP,
    "tool_overhead": KEEP,
}


def _pick(value: Any, spec: Spec) -> Any:
    if spec is KEEP:
        return value
    if callable(spec):
        return spec(value)
    if isinstance(spec, list):
        return [_pick(item, spec[0]) for item in value] if isinstance(value, list) else value
    if not isinstance(value, dict):
        return value
    return {key: _pick(value[key], sub) for key, sub in spec.items() if key in value}


def summarize(
    result: dict[str, Any], *, raw: str | None = None, plot: str | None = None
) -> dict[str, Any]:
    """The summary of a result: its figures and conditions, none of its series.

    ``raw`` and ``plot`` name the result's file and its PNG (file names: the PNG is kept
    beside the summary, the raw series under var/bench where it was written).
    """
    if result.get("schema") != RESULT_SCHEMA:
        raise ValueError(
            f"not a `make bench` result (schema {result.get('schema')!r}, not {RESULT_SCHEMA!r})"
        )
    return {"schema": SUMMARY_SCHEMA, "raw": raw, "plot": plot, **_pick(result, SUMMARY)}


def summary_path(raw: Path) -> Path:
    """Where a result's summary goes: beside it, ``<name>.summary.json``."""
    return raw.with_name(f"{raw.stem}.summary.json")


LINE = 100


def _format(value: Any, indent: int = 0, prefix: int = 0) -> str:
    """JSON that a reader can scan: a value on one line when it fits, else one item a line.

    ``indent``: the line's indentation; ``prefix``: what precedes the value on it (its key).
    """
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or indent + prefix + len(flat) <= LINE:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        keys = {k: json.dumps(k, ensure_ascii=False) for k in value}
        items = [
            f"{pad}{keys[k]}: {_format(v, indent + 2, len(keys[k]) + 2)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _format(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_format(summary) + "\n", encoding="utf-8")
    return path
