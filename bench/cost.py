"""Cost per million events on AWS, from the calls counted in the accounting pass (pure).

Counted (the proxy saw them): every call the API, the Lambda handlers and the consumers make.
Modelled (they happen inside the emulator, where no proxy can see them), from counted figures:
- EventBridge delivering each accepted event to each SQS target of the bus's rules: one SQS
  SendMessage request per event and target (SQS bills the queue owner for them);
- the event source mapping's own SQS calls: under load AWS's pollers receive up to 10
  messages per ReceiveMessage and delete up to 10 per DeleteMessageBatch, so 0.1 + 0.1
  requests per buffered message (its idle long polls are a fixed monthly cost, not per event);
- the Lambda invocations and their durations, as the emulator logged them (one REPORT line per
  invocation in CloudWatch Logs), billed per 1 ms at the function's memory size;
- the bus archive: every accepted event's size processed into it, stored for its retention.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.calls import CHUNK_BYTES

PRICES_FILE = Path(__file__).with_name("prices.json")
MILLION = 1_000_000
GB = 1024**3
ESM_REQUESTS_PER_MESSAGE = 0.1 + 0.1  # ReceiveMessage of 10 + DeleteMessageBatch of 10
ESM_IDLE_POLLERS = 5  # AWS's initial long-poll concurrency per SQS event source mapping
SECONDS_PER_MONTH = 30 * 24 * 3600
BILLED = {("events", "PutEvents"): "eventbridge_custom_event"}


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Usage:
    events: int  # accepted events in the window
    counted: list[dict[str, Any]]  # proxy rows: service, operation, caller, calls, billed_units ...
    bus_targets_per_event: int  # SQS targets every event is delivered to
    lambda_invocations: int | None = None
    lambda_mean_duration_ms: float | None = None
    lambda_memory_mb: int = 128
    lambda_architecture: str = "x86_64"
    lambda_log_bytes: int | None = None
    lambda_platform_log_bytes: int = 0  # of lambda_log_bytes: START, END and REPORT lines
    lambda_system_log_level: str = "INFO"  # the functions' LoggingConfig (WARN drops those lines)
    archive_retention_days: int | None = None
    idle_calls_per_second: dict[str, float] = field(default_factory=dict)  # by service:operation
    # SQS event source mappings (one per function; idle, each long-polls): None, one per target
    event_source_mappings: int | None = None


def calls_per_event(counted: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """Counted calls per accepted event: by service and operation, by caller, and in total."""
    if events <= 0:
        raise ValueError("calls per event needs at least one accepted event")
    by_operation: dict[str, dict[str, float]] = {}
    by_caller: dict[str, float] = {}
    for row in counted:
        if row["service"] == "unsigned":
            continue  # health checks of the supervisor, not AWS calls
        key = f"{row['service']}:{row['operation']}"
        entry = by_operation.setdefault(key, {"calls": 0.0, "entries": 0.0, "billed_units": 0.0})
        entry["calls"] += row["calls"] / events
        entry["entries"] += row["entries"] / events
        entry["billed_units"] += row["billed_units"] / events
        by_caller[row["caller"]] = by_caller.get(row["caller"], 0.0) + row["calls"] / events
    rounded = {k: {n: round(v, 4) for n, v in e.items()} for k, e in sorted(by_operation.items())}
    return {
        "total": round(sum(e["calls"] for e in by_operation.values()), 4),
        "by_operation": rounded,
        "by_caller": {k: round(v, 4) for k, v in sorted(by_caller.items())},
    }


def _price(prices: dict[str, Any], name: str) -> float:
    entry = prices["prices"][name]
    return float(entry["usd"]) / float(entry["per"])


def cost_per_million(usage: Usage, prices: dict[str, Any]) -> dict[str, Any]:
    """Dollars per million accepted events, line by line, with the basis of each line."""
    n = usage.events
    if n <= 0:
        raise ValueError("a cost per event needs at least one accepted event")
    scale = MILLION / n
    lines: list[dict[str, Any]] = []
    unpriced: list[str] = []

    def line(item: str, quantity_per_million: float, price_name: str, basis: str) -> None:
        usd = quantity_per_million * _price(prices, price_name)
        lines.append(
            {
                "item": item,
                "quantity": round(quantity_per_million, 1),
                "price": price_name,
                "usd": round(usd, 4),
                "basis": basis,
            }
        )

    sqs_units = 0.0
    put_units = put_bytes = 0.0
    for row in usage.counted:
        key = (row["service"], row["operation"])
        if row["service"] == "sqs":
            sqs_units += row["billed_units"]
        elif key in BILLED:
            put_units += row["billed_units"]
            put_bytes += row.get("payload_bytes", 0)
        elif row["service"] != "unsigned":
            unpriced.append(f"{row['service']}:{row['operation']}")
    line(
        "EventBridge custom events (PutEvents entries)",
        put_units * scale,
        "eventbridge_custom_event",
        "counted: PutEvents entries in 64 KB chunks",
    )
    if usage.archive_retention_days:
        gb = put_bytes * scale / GB
        lines.append(
            {
                "item": "EventBridge archive (processing + storage for the retention)",
                "quantity": round(gb, 4),
                "price": "eventbridge_archive_*",
                "usd": round(
                    gb
                    * (
                        _price(prices, "eventbridge_archive_processing_gb")
                        + _price(prices, "eventbridge_archive_storage_gb_month")
                        * usage.archive_retention_days
                        / 30
                    ),
                    4,
                ),
                "basis": f"counted entry bytes, kept {usage.archive_retention_days} days",
            }
        )
    deliveries = put_units * usage.bus_targets_per_event
    line(
        "SQS: EventBridge deliveries to the rules' queues",
        deliveries * scale,
        "sqs_standard_request",
        f"modelled: every accepted entry x {usage.bus_targets_per_event} SQS targets",
    )
    line(
        "SQS: event source mapping receives and deletes",
        deliveries * ESM_REQUESTS_PER_MESSAGE * scale,
        "sqs_standard_request",
        "modelled: 0.1 ReceiveMessage + 0.1 DeleteMessageBatch per buffered message",
    )
    line(
        "SQS: calls of the API, Lambdas and consumers",
        sqs_units * scale,
        "sqs_standard_request",
        "counted: every SQS request in 64 KB chunks, empty receives included",
    )
    if usage.lambda_invocations is not None:
        line(
            "Lambda requests",
            usage.lambda_invocations * scale,
            "lambda_request",
            "counted: the REPORT lines the emulator logged in the window",
        )
        if usage.lambda_mean_duration_ms is not None:
            billed_ms = math.ceil(usage.lambda_mean_duration_ms)
            gb_seconds = usage.lambda_invocations * billed_ms / 1000 * usage.lambda_memory_mb / 1024
            line(
                "Lambda compute",
                gb_seconds * scale,
                f"lambda_gb_second_{usage.lambda_architecture}",
                f"REPORT lines' mean Duration {usage.lambda_mean_duration_ms:.1f} ms ->"
                f" {billed_ms} ms at {usage.lambda_memory_mb} MB",
            )
    if usage.lambda_log_bytes is not None:
        ingested, basis = usage.lambda_log_bytes, "measured: bytes the Lambdas logged in the window"
        if usage.lambda_system_log_level == "WARN":
            # The emulator writes Lambda's own lines whatever the function's LoggingConfig says.
            ingested -= usage.lambda_platform_log_bytes
            basis += (
                f", less the START/END/REPORT lines ({usage.lambda_platform_log_bytes} of"
                f" {usage.lambda_log_bytes} bytes) that system_log_level WARN keeps out on AWS"
            )
        line(
            "CloudWatch Logs: Lambda log ingestion",
            ingested * scale / GB,
            "cloudwatch_logs_ingestion_gb",
            basis,
        )
    total = round(sum(item["usd"] for item in lines), 4)
    return {
        "per_million_events_usd": total,
        "lines": lines,
        "not_priced": sorted(set(unpriced)),
        "fixed_monthly_usd": fixed_monthly(usage, prices),
        "region": prices["region"],
        "prices_checked": prices["checked"],
        "assumptions": ASSUMPTIONS,
    }


AWS_BATCHING_BASIS = (
    "estimate, not counted: AWS's mapping gathers min(BatchSize, rate x window) records per"
    " invocation (the emulator: as they come, at most 10), so invocations and pack sends fall by"
    " that factor (packs billed per 64 KB); compute and log bytes per event kept as measured"
)


def records_per_invocation(usage: Usage) -> float | None:
    """Records each Lambda invocation got: every buffered message is one Lambda record."""
    if not usage.lambda_invocations:
        return None
    return usage.events * usage.bus_targets_per_event / usage.lambda_invocations


def with_aws_batching(
    usage: Usage,
    prices: dict[str, Any],
    *,
    rate: float,
    batch_size: int | None,
    window_seconds: float | None,
) -> dict[str, Any] | None:
    """The same cost with the Lambda batches AWS's mapping would form at this rate (an estimate).

    The emulator invokes a function as soon as a record waits and caps a batch at 10; AWS
    gathers up to ``batch_size`` records for up to ``window_seconds``. At ``rate`` events/s per
    buffer queue a batch holds min(batch_size, rate x window) records. Invocations and the
    pack sends (one per invocation, billed per 64 KB of its records) fall by that factor.
    Conservatively, each invocation's duration grows in proportion to its records (so compute
    per event does not fall), and the log bytes per event stay as measured.
    """
    measured = records_per_invocation(usage)
    if not (measured and batch_size and window_seconds and rate > 0):
        return None
    records = usage.events * usage.bus_targets_per_event
    per_invocation = max(measured, min(float(batch_size), rate * window_seconds))
    factor = measured / per_invocation
    counted = [_with_bigger_packs(row, factor, per_invocation, records) for row in usage.counted]
    estimate = replace(
        usage,
        counted=counted,
        lambda_invocations=max(1, round(usage.lambda_invocations * factor)),
        lambda_mean_duration_ms=(usage.lambda_mean_duration_ms or 0) / factor or None,
    )
    cost = cost_per_million(estimate, prices)
    return {
        "per_million_events_usd": cost["per_million_events_usd"],
        "records_per_invocation": {"measured": round(measured, 2), "aws": per_invocation},
        "lines": cost["lines"],
        "basis": AWS_BATCHING_BASIS,
    }


def _with_bigger_packs(
    row: dict[str, Any], factor: float, records_per_pack: float, records: int
) -> dict[str, Any]:
    if (row["caller"], row["operation"]) != ("lambda_workers", "SendMessageBatch"):
        return row
    calls = row["calls"] * factor
    bytes_per_record = row.get("payload_bytes", 0) / max(records, 1)
    units = max(1, math.ceil(records_per_pack * bytes_per_record / CHUNK_BYTES))
    return {**row, "calls": calls, "entries": calls, "billed_units": calls * units}


def fixed_monthly(usage: Usage, prices: dict[str, Any]) -> dict[str, Any]:
    """What an idle pipeline costs per month: consumers' empty long polls and the ESM pollers."""
    sqs = _price(prices, "sqs_standard_request")
    idle = sum(v for k, v in usage.idle_calls_per_second.items() if k.startswith("sqs:"))
    mappings = usage.event_source_mappings or usage.bus_targets_per_event
    pollers = ESM_IDLE_POLLERS * mappings / 20  # one 20 s long poll at a time
    return {
        "consumer_idle_polls_usd": round(idle * SECONDS_PER_MONTH * sqs, 2),
        "esm_idle_polls_usd": round(pollers * SECONDS_PER_MONTH * sqs, 2),
        "basis": "counted idle SQS calls/s of the consumers; "
        "modelled 5 ESM long pollers per mapping",
    }


ASSUMPTIONS = [
    "List prices of the region in bench/prices.json, first paid tier, free tiers ignored.",
    "Calls the API, the Lambda handlers and the consumers make are counted from the wire by the "
    "accounting pass's proxy, at the accounting rate (empty receives depend on the rate).",
    "EventBridge -> SQS deliveries and the event source mapping's polling happen inside the "
    "emulator and are modelled from the counted PutEvents entries (see bench/cost.py).",
    "Lambda invocations and durations are the REPORT lines the emulator logs: MiniStack hands "
    "at most 10 records to an invocation whatever BatchSize says (AWS: up to BatchSize), and its "
    "Duration includes its own wait for the handler's output (5-50 ms), so both overstate AWS.",
    "CloudWatch Logs counts only what the Lambdas log; the API's and consumers' logs go wherever "
    "their platform sends them and are not priced.",
    "Control-plane calls (describe/get of the bus, queue URLs and attributes) are free on AWS "
    "EventBridge and billed like any request on SQS (included above).",
]
