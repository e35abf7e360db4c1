"""What the emulator recorded about the pipeline's Lambdas, read back from CloudWatch Logs.

MiniStack writes AWS's START / handler output / END / REPORT lines to ``/aws/lambda/<name>``
for every invocation, the event source mapping's included (it emits no AWS/Lambda metrics for
those). One REPORT line is one invocation and carries its Duration; the bytes of all lines are
what CloudWatch Logs would ingest (plus 26 bytes per log event, as AWS meters it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REPORT = re.compile(r"^REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms")
# Lambda's own lines; a function with system_log_level WARN does not get them on AWS.
PLATFORM = re.compile(r"^(START|END|REPORT) RequestId: ")
LOG_EVENT_OVERHEAD_BYTES = 26


def pipeline_functions(lambda_client: Any) -> list[dict[str, Any]]:
    """The pipeline's Lambdas: the intake (DATASYNC_INTAKE_ROUTES in its environment) and the
    destinations' functions (DATASYNC_DESTINATION)."""
    functions = []
    for page in lambda_client.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            variables = (function.get("Environment") or {}).get("Variables") or {}
            if {"DATASYNC_DESTINATION", "DATASYNC_INTAKE_ROUTES"} & set(variables):
                functions.append(function)
    return functions


def summarize_log_lines(messages: list[str]) -> dict[str, Any]:
    """Invocations, their mean Duration and the billable bytes of a list of log messages."""
    durations = [float(m.group(1)) for m in (REPORT.match(line) for line in messages) if m]
    return {
        "invocations": len(durations),
        "mean_duration_ms": round(sum(durations) / len(durations), 2) if durations else None,
        "max_duration_ms": max(durations) if durations else None,
        "log_bytes": _billed_bytes(messages),
        "platform_log_bytes": _billed_bytes(line for line in messages if PLATFORM.match(line)),
    }


def _billed_bytes(messages: Iterable[str]) -> int:
    return sum(len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES for line in messages)


def invocation_stats(logs: Any, names: list[str], start: float, end: float) -> dict[str, Any]:
    """Per-function and total figures for invocations that logged within [start, end]."""
    per_function = {}
    everything: list[str] = []
    for name in names:
        messages = []
        paginator = logs.get_paginator("filter_log_events")
        for page in paginator.paginate(
            logGroupName=f"/aws/lambda/{name}", startTime=int(start * 1000), endTime=int(end * 1000)
        ):
            messages += [e["message"] for e in page.get("events", [])]
        per_function[name] = summarize_log_lines(messages)
        everything += messages
    return {**summarize_log_lines(everything), "per_function": per_function}
