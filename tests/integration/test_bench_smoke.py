"""`make bench` end to end, small: the tool against the session stack for about 10 s of load.

It runs the tool as `make bench BENCH_STACK=running` does (its own venv, .tools/bench), with a
small API pass, burst and ceiling, and checks that the result has every headline field with
values that match what was offered, and that its summary (what docs/bench keeps) was written
beside it, holds the same figures, and is what the tool printed. The accounting pass (a second stack behind the
counting proxy, ~2 min) is left out here; the proxy and the cost model have unit tests of their
own (tests/unit/test_bench_calls.py, test_bench_cost.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.report import SUMMARY_SCHEMA, summary_text, validate
from devstack.paths import ROOT

pytestmark = pytest.mark.integration

BENCH_PYTHON = ROOT / ".tools" / "bench" / "bin" / "python"
RATE, SECONDS, BURST = 20, 10, 300


def test_bench_against_the_running_session_stack(stack, tmp_path):
    if not BENCH_PYTHON.exists():
        pytest.fail(
            "the benchmark's venv is missing: run `make bench-tools` (make test installs it)"
        )
    out = tmp_path / "bench.json"
    command = [
        str(BENCH_PYTHON),
        "-m",
        "bench",
        "--stack",
        "running",
        "--env-file",
        str(stack.config.layout.env_file),
        "--api-url",
        f"http://127.0.0.1:{stack.config.layout.api_port}",
        "--rate",
        str(RATE),
        "--seconds",
        str(SECONDS),
        "--warmup-seconds",
        "2",
        "--burst",
        str(BURST),
        "--no-accounting",
        "--drain-timeout",
        "60",
        "--var-dir",
        str(tmp_path / "var"),
        "--out",
        str(out),
        "--no-progress",
    ]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )  # noqa: S603
    assert out.exists(), f"no result written:\n{run.stdout}\n{run.stderr[-3000:]}"
    result = json.loads(out.read_text())

    assert validate(result) == [], run.stdout
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    # The API pass offered exactly RATE x SECONDS users, and every one was accepted and applied.
    api = result["api"]
    assert api["requests"] == RATE * SECONDS
    assert api["status_counts"] == {"202": RATE * SECONDS}
    assert api["e2e"]["applied_everywhere"] == RATE * SECONDS
    assert 0.8 * RATE <= result["api_requests_per_second"] <= 1.2 * RATE
    # The burst went to the pipeline and the ceiling's three queues, each event once.
    assert result["burst"]["applied_everywhere"] == BURST
    assert result["ceiling"]["delivered_per_queue"] == [BURST, BURST, BURST]
    assert result["pipeline_to_ceiling_ratio"] > 0
    # Read from the emulator's log: our entry point lifted MiniStack's cap of 10.
    assert result["emulator"] == {"event_source_mapping_batch_limit": 10000}
    # CPU and memory were attributed to the pipeline's own processes.
    for kind in ("api", "ministack", "lambda_workers", "consumers", "load_generator"):
        assert result["cpu_ms_per_event"].get(kind, 0) > 0, kind
    assert result["accounting"]["skipped"]
    assert {d for s in result["timeseries"] if "depth" in s for d in s["depth"]} == {
        "intake",
        "crm",
        "marketing",
        "analytics",
    }
    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "API" in run.stdout and "Targets" in run.stdout

    summary_file = tmp_path / "bench.summary.json"
    summary = json.loads(summary_file.read_text())
    assert (summary["schema"], summary["raw"], summary["plot"]) == (
        SUMMARY_SCHEMA,
        "bench.json",
        "bench.png",
    )
    for field in ("e2e_events_per_minute", "api_latency_ms", "targets", "emulator"):
        assert summary[field] == result[field], field
    assert summary["checkout"]["commit"] == result["checkout"]["commit"]
    assert summary["burst"]["events_per_second"] == result["burst"]["events_per_second"]
    assert "timeseries" not in summary and "per_second" not in summary["api"]
    assert summary_file.stat().st_size < out.stat().st_size / 3
    assert summary_text(summary) in run.stdout  # the printed summary is the summary's
