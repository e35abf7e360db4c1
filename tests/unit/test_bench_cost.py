"""bench/cost.py: dollars per million events from counted calls, line by line."""

from dataclasses import replace

import pytest

from bench.cost import (
    Usage,
    calls_per_event,
    cost_per_million,
    load_prices,
    records_per_invocation,
    with_aws_batching,
)

PRICES = load_prices()


def row(service, operation, calls, billed_units=None, entries=None, payload_bytes=0, caller="api"):
    return {
        "service": service,
        "operation": operation,
        "caller": caller,
        "calls": calls,
        "entries": entries if entries is not None else calls,
        "billed_units": billed_units if billed_units is not None else calls,
        "payload_bytes": payload_bytes,
        "errors": 0,
    }


# What an accounting window of 1,000 events could count: an API that batches 10 entries per
# PutEvents, Lambdas sending batches, consumers receiving and deleting, a few free calls.
COUNTED = [
    row("events", "PutEvents", 100, billed_units=1000, entries=1000, payload_bytes=540_000),
    row("events", "DescribeEventBus", 2),
    row("sqs", "SendMessageBatch", 300, entries=3000, caller="lambda_workers"),
    row("sqs", "ReceiveMessage", 400, caller="consumers"),
    row("sqs", "DeleteMessageBatch", 300, entries=3000, caller="consumers"),
    row("unsigned", "GET /_localstack/health", 5, caller="supervisor"),
]
USAGE = Usage(
    events=1000,
    counted=COUNTED,
    bus_targets_per_event=3,
    lambda_invocations=300,
    lambda_mean_duration_ms=20.4,
    lambda_memory_mb=256,
    lambda_architecture="x86_64",
    lambda_log_bytes=300_000_000 // 1000,
    archive_retention_days=30,
    idle_calls_per_second={"sqs:ReceiveMessage": 0.6},
)
GIB = 1024**3


def lines(cost):
    return {line["item"]: line["usd"] for line in cost["lines"]}


def test_each_line_is_quantity_times_list_price():
    cost = cost_per_million(USAGE, PRICES)
    by_item = lines(cost)
    assert by_item["EventBridge custom events (PutEvents entries)"] == pytest.approx(
        1.00
    )  # entries, not calls
    assert by_item["SQS: EventBridge deliveries to the rules' queues"] == pytest.approx(1.20)  # 3 M
    assert by_item["SQS: event source mapping receives and deletes"] == pytest.approx(0.24)  # 0.6 M
    assert by_item["SQS: calls of the API, Lambdas and consumers"] == pytest.approx(0.40)  # 1.0 M
    assert by_item["Lambda requests"] == pytest.approx(0.06)  # 300 k invocations
    # 300 k invocations x 21 ms (20.4 billed per whole ms) x 0.25 GB x $0.0000166667
    assert by_item["Lambda compute"] == pytest.approx(
        300_000 * 0.021 * 0.25 * 0.0000166667, abs=1e-4
    )
    assert by_item["CloudWatch Logs: Lambda log ingestion"] == pytest.approx(
        0.3e9 / GIB * 0.50, abs=1e-4
    )
    archive = 540e6 / GIB * (0.10 + 0.023)
    assert by_item["EventBridge archive (processing + storage for the retention)"] == pytest.approx(
        archive, abs=1e-4
    )
    assert cost["per_million_events_usd"] == pytest.approx(sum(by_item.values()), abs=1e-3)
    assert cost["per_million_events_usd"] == pytest.approx(3.128, abs=2e-3)


def test_lambdas_own_log_lines_are_priced_unless_system_log_level_warn_keeps_them_out():
    usage = {**USAGE.__dict__, "lambda_platform_log_bytes": 100_000}
    logs = "CloudWatch Logs: Lambda log ingestion"
    with_them = lines(
        cost_per_million(Usage(**{**usage, "lambda_system_log_level": "INFO"}), PRICES)
    )
    without = cost_per_million(Usage(**{**usage, "lambda_system_log_level": "WARN"}), PRICES)
    assert with_them[logs] == pytest.approx(0.3e9 / GIB * 0.50, abs=1e-4)
    assert lines(without)[logs] == pytest.approx(0.2e9 / GIB * 0.50, abs=1e-4)
    basis = next(line["basis"] for line in without["lines"] if line["item"] == logs)
    assert "START/END/REPORT lines (100000 of 300000 bytes)" in basis


def test_with_aws_batching_fewer_invocations_and_pack_sends_and_nothing_else_falls():
    # USAGE: 3,000 buffered records in 300 invocations (10 each); AWS at 200 events/s per
    # queue with a 1 s window and BatchSize 100 would hand 100 to each: a tenth of them.
    counted = lines(cost_per_million(USAGE, PRICES))
    estimate = with_aws_batching(USAGE, PRICES, rate=200, batch_size=100, window_seconds=1)
    assert estimate["records_per_invocation"] == {"measured": 10.0, "aws": 100.0}
    aws = {line["item"]: line["usd"] for line in estimate["lines"]}
    assert aws["Lambda requests"] == pytest.approx(counted["Lambda requests"] / 10)
    # pack sends 300 -> 30 of the 1,000 counted SQS requests; receives and deletes stay
    assert aws["SQS: calls of the API, Lambdas and consumers"] == pytest.approx(0.73 * 0.40)
    for kept in ("CloudWatch Logs: Lambda log ingestion", "SQS: EventBridge deliveries to the "
                 "rules' queues", "EventBridge custom events (PutEvents entries)"):  # fmt: skip
        assert aws[kept] == counted[kept]
    assert aws["Lambda compute"] == pytest.approx(counted["Lambda compute"], rel=0.05)
    assert (
        estimate["per_million_events_usd"]
        < cost_per_million(USAGE, PRICES)["per_million_events_usd"]
    )


def test_with_aws_batching_bills_a_bigger_pack_per_64_kb():
    sends = row("sqs", "SendMessageBatch", 300, payload_bytes=3000 * 1000, caller="lambda_workers")
    usage = Usage(**{**USAGE.__dict__, "counted": [sends]})
    estimate = with_aws_batching(usage, PRICES, rate=200, batch_size=100, window_seconds=1)
    sqs = next(x for x in estimate["lines"] if x["item"].startswith("SQS: calls"))
    assert sqs["quantity"] == pytest.approx(30 * 2 * 1000)  # 100 KB packs: 2 units, per million


def test_with_aws_batching_changes_nothing_when_batches_are_already_as_full():
    same = with_aws_batching(USAGE, PRICES, rate=5, batch_size=100, window_seconds=1)
    assert (
        same["per_million_events_usd"] == cost_per_million(USAGE, PRICES)["per_million_events_usd"]
    )
    assert with_aws_batching(USAGE, PRICES, rate=200, batch_size=100, window_seconds=None) is None


def test_records_per_invocation_counts_every_buffered_message_once():
    assert records_per_invocation(USAGE) == 10.0  # 1,000 events x 3 queues / 300 invocations
    assert records_per_invocation(replace(USAGE, lambda_invocations=600)) == 5.0
    assert records_per_invocation(replace(USAGE, lambda_invocations=None)) is None


def test_free_calls_are_listed_not_priced_and_health_checks_are_not_aws_calls():
    cost = cost_per_million(USAGE, PRICES)
    assert cost["not_priced"] == ["events:DescribeEventBus"]
    without = cost_per_million(
        Usage(**{**USAGE.__dict__, "counted": COUNTED[:1] + COUNTED[2:]}), PRICES
    )
    assert without["per_million_events_usd"] == cost["per_million_events_usd"]


def test_the_cost_falls_when_the_counted_calls_fall():
    """Halving the consumers' receives (say, fuller batches) must show in the total."""
    fewer = [
        r if r["operation"] != "ReceiveMessage" else {**r, "calls": 200, "billed_units": 200}
        for r in COUNTED
    ]
    cheaper = cost_per_million(Usage(**{**USAGE.__dict__, "counted": fewer}), PRICES)
    assert cost_per_million(USAGE, PRICES)["per_million_events_usd"] - cheaper[
        "per_million_events_usd"
    ] == pytest.approx(0.08, abs=1e-3)


def test_idle_pipeline_costs_are_monthly_not_per_event():
    fixed = cost_per_million(USAGE, PRICES)["fixed_monthly_usd"]
    assert fixed["consumer_idle_polls_usd"] == pytest.approx(
        0.6 * 30 * 24 * 3600 * 0.4e-6, abs=0.01
    )
    assert fixed["esm_idle_polls_usd"] == pytest.approx(
        5 * 3 / 20 * 30 * 24 * 3600 * 0.4e-6, abs=0.01
    )


def test_calls_per_event_by_operation_and_caller():
    calls = calls_per_event(COUNTED, events=1000)
    assert calls["by_operation"]["events:PutEvents"] == {
        "calls": 0.1,
        "entries": 1.0,
        "billed_units": 1.0,
    }
    assert calls["by_operation"]["sqs:ReceiveMessage"]["calls"] == 0.4
    assert "unsigned:GET /_localstack/health" not in calls["by_operation"]
    assert calls["total"] == pytest.approx(0.1 + 0.002 + 0.3 + 0.4 + 0.3)
    assert calls["by_caller"] == {"api": 0.102, "consumers": 0.7, "lambda_workers": 0.3}


def test_no_events_is_an_error_not_a_division():
    with pytest.raises(ValueError, match="at least one"):
        calls_per_event(COUNTED, events=0)
    with pytest.raises(ValueError, match="at least one"):
        cost_per_million(Usage(**{**USAGE.__dict__, "events": 0}), PRICES)


def test_the_price_table_says_where_and_when():
    assert PRICES["region"] == "us-east-1"
    assert PRICES["checked"]
    for name, price in PRICES["prices"].items():
        assert price["source"].startswith("https://aws.amazon.com/"), name
        assert price["usd"] > 0 and price["per"] >= 1, name


def test_every_event_source_mapping_polls_when_idle_not_only_the_live_targets():
    # The intake is the one live target, but the destinations' functions poll their buffers too.
    usage = Usage(**{**USAGE.__dict__, "bus_targets_per_event": 1, "event_source_mappings": 4})
    fixed = cost_per_million(usage, PRICES)["fixed_monthly_usd"]
    assert fixed["esm_idle_polls_usd"] == pytest.approx(
        5 * 4 / 20 * 30 * 24 * 3600 * 0.4e-6, abs=0.01
    )
