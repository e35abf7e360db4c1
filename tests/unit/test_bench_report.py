"""bench/report.py: a result is complete and sane, targets are compared, the summary reads.

The text is rendered as the tool prints it: from the run's summary, not from the whole result.
"""

import copy
import json
from pathlib import Path

import pytest

from bench.lambdas import summarize_log_lines
from bench.report import REQUIRED, lowest_ratio, summarize, summary_text, targets, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


def text(result):
    return summary_text(summarize(result))


@pytest.fixture
def result():
    """A result `make bench` wrote (time series cut short), from a run on a 2-core machine."""
    return json.loads((FIXTURES / "result.json").read_text())


def test_a_result_the_tool_wrote_is_complete(result):
    assert validate(result) == []


@pytest.mark.parametrize("field", REQUIRED)
def test_each_required_field_is_checked(result, field):
    del result[field]
    assert f"missing {field}" in validate(result)


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("e2e_events_per_minute", 0, "positive number"),
        ("api_requests_per_second", None, "positive number"),
        ("emulator_ceiling_events_per_second", -1.0, "positive number"),
        ("api_latency_ms", {"p50": 10, "p95": 5, "p99": 20}, "p50 <= p95 <= p99"),
        ("e2e_latency_ms", {"p50": 10, "p95": None, "p99": 20}, "numeric p50, p95 and p99"),
        ("aws_calls_per_event", {"total": 0, "by_operation": {}}, "positive total"),
        ("cost_per_million_events_usd", None, "positive number"),
        ("peak_rss_mb", {"api": 120.0}, "peak_rss_mb.consumers"),
        ("cores", 0, "positive integer"),
    ],
)
def test_values_that_are_not_sane_are_reported(result, field, value, complaint):
    result[field] = value
    assert any(complaint in problem for problem in validate(result)), validate(result)


def test_accounting_fields_may_be_null_only_when_the_result_says_why(result):
    result["aws_calls_per_event"] = result["cost_per_million_events_usd"] = None
    assert len(validate(result)) == 2
    result["accounting"] = {"skipped": "--no-accounting (BENCH_ACCOUNTING=0)"}
    assert validate(result) == []


def test_no_ceiling_is_a_problem_unless_the_run_was_asked_for_no_burst(result):
    result["emulator_ceiling_events_per_second"] = None
    assert len(validate(result)) == 1
    result["parameters"].update(burst=0, scaling=False)
    assert validate(result) == []
    result["parameters"]["scaling"] = True  # the scaling pairs measure a ceiling
    assert len(validate(result)) == 1


def test_targets_compare_against_their_bounds(result):
    better = copy.deepcopy(result)
    better.update(
        e2e_events_per_minute=31_000,
        lowest_pipeline_to_ceiling_ratio=0.85,
        cost_per_million_events_usd=2.5,
    )
    better["e2e_latency_ms"]["p95"] = 1900
    better["api_latency_ms"]["p99"] = 45
    assert [t["met"] for t in targets(better)] == [True, True, True, True, True]
    worse = copy.deepcopy(better)
    worse.update(e2e_events_per_minute=29_999, cost_per_million_events_usd=3.01)
    assert [t["met"] for t in targets(worse)] == [False, True, True, True, False]
    worse["lowest_pipeline_to_ceiling_ratio"] = None  # no ceiling measured: neither met nor failed
    assert targets(worse)[1]["met"] is None


def test_the_ceiling_target_is_met_only_if_every_burst_size_meets_it(result):
    result["pipeline_to_ceiling_ratio"] = 0.85  # the default burst of 6,000
    assert lowest_ratio(result) == 0.85
    result["scaling"] = [
        {"events": 2000, "ratio": 0.597},
        {"events": 6000, "ratio": 0.84},
        {"events": 20000, "ratio": None},  # the ceiling did not drain in time
    ]
    assert lowest_ratio(result) == 0.597
    assert lowest_ratio({"scaling": []}) is None


def test_the_summary_says_how_large_the_emulators_lambda_batches_could_be(result):
    result["emulator"] = {"event_source_mapping_batch_limit": 10000}
    assert "emulator's Lambda batches up to 10000 records" in text(result).splitlines()[0]
    result["emulator"] = {"event_source_mapping_batch_limit": None}
    assert "batch limit unknown" in text(result).splitlines()[0]


def test_the_summary_quotes_the_headline_figures(result):
    printed = text({**result, "targets": targets(result)})
    assert f"{result['api']['served_requests_per_second']} req/s served" in printed
    assert f"({result['e2e_events_per_minute']}/min)" in printed
    assert f"${result['cost_per_million_events_usd']} per million events" in printed
    assert "Targets" in printed


def test_the_summary_says_where_a_bursts_and_a_ceilings_cpu_went(result):
    result["burst"]["cpu"] = {
        "cores_busy": 1.93,
        "machine_ms_per_event": 2.05,
        "ms_per_event": {"ministack": 1.9, "api": 0.0},
    }
    result["burst"]["lambda"] = {"invocations_per_event": 0.31}
    result["ceiling"]["cpu"] = {
        "cores_busy": 1.41,
        "machine_ms_per_event": 1.02,
        "ms_per_event": {"ceiling_drainers": 0.57},
    }
    lines = text(result).splitlines()
    assert (
        "pipeline 1.93 cores busy (2.05 ms CPU/event, whole machine); by kind ministack 1.9;"
        " 0.31 Lambda invocations/event" in (" ".join(lines))
    )
    assert any(
        "ceiling  1.41 cores busy (1.02 ms CPU/event, whole machine); by kind ceiling_drainers 0.57"
        in x
        for x in lines
    )


def test_the_summary_gives_the_aws_batching_estimate_beside_the_counted_cost(result):
    result["cost"]["with_aws_batching"] = {
        "per_million_events_usd": 2.81,
        "records_per_invocation": {"measured": 4.83, "aws": 100.0},
    }
    assert (
        "estimate with AWS's Lambda batches (100 records per invocation, not 4.83):"
        " $2.81 per million events" in text(result)
    )


def test_the_summary_gives_the_cost_counted_on_the_bus_at_its_rate(result):
    result["cost"]["on_the_bus"] = {
        "rate": 500.0,
        "records_per_invocation": 9.96,
        "per_million_events_usd": 2.89,
    }
    printed = text(result)
    assert f"counted at {result['accounting']['rate']:g} req/s through the API" in printed
    assert (
        "counted at 500 events/s put on the bus (9.96 records per invocation):"
        " $2.89 per million events" in printed
    )
    del result["cost"]["on_the_bus"]
    assert "put on the bus" not in text(result)


def test_lambda_invocations_and_log_bytes_from_the_emulators_log_lines():
    lines = (FIXTURES / "lambda-log-lines.txt").read_text().splitlines()
    stats = summarize_log_lines(lines)
    reports = [line for line in lines if line.startswith("REPORT ")]
    assert stats["invocations"] == len(reports) > 0
    durations = [float(line.split("Duration: ")[1].split(" ms")[0]) for line in reports]
    assert stats["mean_duration_ms"] == pytest.approx(sum(durations) / len(durations), abs=0.01)
    assert stats["log_bytes"] == sum(len(line.encode()) + 26 for line in lines)
    platform = [line for line in lines if line.split(" ", 1)[0] in ("START", "END", "REPORT")]
    assert 0 < stats["platform_log_bytes"] == sum(len(line.encode()) + 26 for line in platform)
    assert stats["platform_log_bytes"] < stats["log_bytes"]
