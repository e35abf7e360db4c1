"""bench/report.py's summary and `python -m bench summarize`: what docs/bench keeps of a run.

The fixture is a real `make bench BENCH_SCALING=1 BENCH_SUSTAINED_SECONDS=600` result (64ea5cf,
every pass, its series cut short).
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import (
    SUMMARY_SCHEMA,
    summarize,
    summary_path,
    summary_text,
    validate,
    write_summary,
)
from bench.summarize import main as summarize_command

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bench"
MISSING = object()

# The figures BENCHMARKS.md's tables and README's quote, and the run's conditions.
QUOTED = [
    "started_at",
    "cores",
    "machine.cpu_model",
    "machine.load_average_before",
    "machine.load_average_after",
    "checkout.commit",
    "checkout.uncommitted_changes",
    "parameters.rate",
    "parameters.seconds",
    "parameters.burst",
    "parameters.scaling_sizes",
    "parameters.sustained_rate",
    "parameters.sustained_seconds",
    "parameters.accounting_bus_rate",
    "e2e_events_per_minute",
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
    "peak_rss.lambda_workers",
    "cpu_ms_per_event",
    "targets",
    "warnings",
    "api.status_counts",
    "api.generator.cpu_ms_per_request",
    "api.generator.send_lag_ms",
    "api.e2e.applied_everywhere",
    "lambda.invocations_per_event",
    "burst.events_per_second",
    "burst.latency_ms",
    "burst.cpu",
    "burst.lambda.invocations_per_event",
    "ceiling.events_per_second",
    "ceiling.delivered_per_queue",
    "ceiling.cpu",
    "scaling.0.ratio",
    "scaling.0.pipeline.cpu",
    "scaling.0.ceiling.cpu",
    "scaling.2.pipeline.events_per_second",
    "scaling.2.ceiling.events_per_second",
    "scaling.1.pipeline.lambda.invocations_per_event",
    "scaling.2.pipeline.latency_ms.p95",
    "sustained.events",
    "sustained.applied_everywhere",
    "sustained.throughput_last_over_first",
    "sustained.p95_latency_last_over_first",
    "accounting.rate",
    "accounting.lambda.invocations",
    "accounting.on_the_bus.rate",
    "cost.fixed_monthly_usd",
    "cost.with_aws_batching.per_million_events_usd",
    "cost.with_aws_batching.records_per_invocation",
    "cost.on_the_bus.per_million_events_usd",
    "cost.on_the_bus.records_per_invocation",
]


def at(value, path):
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


@pytest.fixture
def result():
    return json.loads((FIXTURES / "result-scaling-sustained.json").read_text())


@pytest.mark.parametrize("path", QUOTED)
def test_the_summary_holds_every_figure_the_tables_quote(result, path):
    assert at(result, path) is not MISSING, "the fixture lacks it: choose another figure"
    assert at(summarize(result), path) == at(result, path)


def test_the_summary_holds_the_sustained_runs_figures_minute_by_minute(result):
    windows = result["sustained"]["windows"]
    kept = summarize(result)["sustained"]["windows"]
    assert kept["seconds"] == 60
    assert kept["applied_everywhere_per_second"] == [
        w["applied_everywhere_per_second"] for w in windows
    ]
    for p in ("p50", "p95", "p99", "max"):
        assert kept["latency_ms"][p] == [w["latency_ms"][p] for w in windows]


@pytest.mark.parametrize("cost", ["", "with_aws_batching", "on_the_bus"])
def test_the_summary_holds_every_cost_line(result, cost):
    raw = at(result, f"cost.{cost}".rstrip("."))
    kept = at(summarize(result), f"cost.{cost}".rstrip("."))
    assert [(x["item"], x["usd"]) for x in kept["lines"]] == [
        (x["item"], x["usd"]) for x in raw["lines"]
    ]


@pytest.mark.parametrize("fixture", ["result.json", "result-scaling-sustained.json"])
def test_the_printed_text_needs_nothing_the_summary_leaves_out(fixture):
    result = json.loads((FIXTURES / fixture).read_text())
    summary = summarize(result)
    assert summary_text(summary) == summary_text(result)
    assert validate(summary) == validate(result) == []


def test_the_summary_names_its_files_and_leaves_the_machines_paths_out(result):
    summary = summarize(result, raw="r.json", plot="r.png")
    assert (summary["schema"], summary["raw"], summary["plot"]) == (
        SUMMARY_SCHEMA,
        "r.json",
        "r.png",
    )
    assert "/srv/datasync" in json.dumps(result)  # the raw result has them
    assert "/srv/datasync" not in json.dumps(summary)


def lasting(result, seconds):
    """The fixture as if its API pass and its sustained run had lasted ``seconds``: as many
    one-second samples and per-second rows, and as many windows as the sustained phase cuts."""
    run = copy.deepcopy(result)
    sample, row = result["timeseries"][-1], result["api"]["per_second"][-1]
    run["timeseries"] = [{**sample, "t": sample["t"] + n} for n in range(seconds)]
    run["api"]["per_second"] = [{**row, "t": row["t"] + n} for n in range(seconds)]
    run["api"]["seconds"] = run["parameters"]["sustained_seconds"] = seconds
    window = 60 if seconds >= 120 else max(10, seconds / 4)  # as bench/phases.py's sustained
    first = result["sustained"]["windows"][0]
    run["sustained"]["windows"] = [
        {**first, "from_s": round(k * window), "to_s": round((k + 1) * window)}
        for k in range(int(seconds // window))
    ]
    return run


def test_a_summary_stays_small_whatever_the_runs_length(result, tmp_path):
    short, long = lasting(result, 60), lasting(result, 600)
    raw_growth = len(json.dumps(long)) - len(json.dumps(short))
    assert raw_growth > 300_000  # the raw result grows with every second
    sizes = [
        write_summary(summarize(run), tmp_path / f"{n}.summary.json").stat().st_size
        for n, run in enumerate((short, long))
    ]
    # Six more sustained windows (4 x 15 s against 10 x 60 s), ~40 bytes each; nothing else.
    assert sizes[1] - sizes[0] < 400, sizes
    assert sizes[1] < 20_000, sizes


def test_the_written_summary_reads_back_as_the_same_json(result, tmp_path):
    summary = summarize(result)
    path = write_summary(summary, tmp_path / "x.summary.json")
    assert json.loads(path.read_text(encoding="utf-8")) == summary


def test_the_summary_says_how_large_the_emulator_let_the_lambda_batches_be(result):
    result["emulator"] = {"event_source_mapping_batch_limit": 10000}
    assert summarize(result)["emulator"] == {"event_source_mapping_batch_limit": 10000}


def test_only_a_bench_result_has_a_summary():
    with pytest.raises(ValueError, match="not a `make bench` result"):
        summarize({"bursts": [], "ratios": []})  # bench/topology.py's output


@pytest.fixture
def raw_run(tmp_path, result):
    runs = tmp_path / "var" / "bench"
    runs.mkdir(parents=True)
    raw = runs / "2026-12-03-intake4-64ea5cf.json"
    raw.write_text(json.dumps(result))
    return raw


def test_the_command_writes_the_summary_and_copies_the_png_where_it_is_kept(raw_run, tmp_path):
    raw_run.with_suffix(".png").write_bytes(b"\x89PNG fake")
    kept = tmp_path / "docs" / "bench"
    assert summarize_command([str(raw_run), "--to", str(kept)]) == 0
    summary = json.loads((kept / "2026-12-03-intake4-64ea5cf.summary.json").read_text())
    assert (kept / "2026-12-03-intake4-64ea5cf.png").read_bytes() == b"\x89PNG fake"
    assert summary["raw"] == raw_run.name
    assert summary["plot"] == "2026-12-03-intake4-64ea5cf.png"
    assert summary["e2e_events_per_minute"] == 141984
    assert sorted(p.name for p in kept.iterdir()) == [
        "2026-12-03-intake4-64ea5cf.png",
        "2026-12-03-intake4-64ea5cf.summary.json",
    ]


def test_the_command_writes_beside_the_result_by_default_and_names_no_missing_png(raw_run):
    assert summarize_command([str(raw_run)]) == 0
    summary = json.loads(summary_path(raw_run).read_text())
    assert summary["plot"] is None


def test_the_command_refuses_a_summary_and_what_is_not_a_result(raw_run, tmp_path, capsys):
    assert summarize_command([str(raw_run)]) == 0
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps({"bursts": [], "ratios": []}))
    out = tmp_path / "out"
    assert summarize_command([str(summary_path(raw_run)), str(topology), "--to", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already a summary" in err and "not a `make bench` result" in err
    assert not out.exists()


def test_the_command_runs_on_the_standard_library_alone(raw_run):
    """`python -S` loads no site-packages: not the tool's venv, not the project's."""
    run = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-S", "-m", "bench", "summarize", str(raw_run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "Targets" in run.stdout
    assert summary_path(raw_run).exists()
