"""docs/bench holds summaries and the PNGs the docs name, and the docs name only what it holds.

Every `docs/bench/...` name in BENCHMARKS.md and README.md (a `*` stands for any characters)
must match a file; every file there must be named; every kept result must be a summary (the
raw results, with every sample, stay under var/bench); and a sample of the figures the tables
quote must be what the summaries hold.
"""

import fnmatch
import json
import re
from pathlib import Path

import pytest

from bench.report import RESULT_SCHEMA, SUMMARY_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "bench"
DOCS = ("BENCHMARKS.md", "README.md")
NAME = re.compile(r"docs/bench/([A-Za-z0-9][A-Za-z0-9._*-]*)")


def named(doc):
    """The docs/bench file names (or patterns) a document names; a sentence's full stop is not
    part of a name."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return {n.rstrip(".") if not n.endswith(".*") else n for n in NAME.findall(text)}


def kept_files():
    return sorted(p.name for p in KEPT.iterdir() if p.is_file())


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_the_docs_name_exists(doc):
    files = kept_files()
    missing = sorted(name for name in named(doc) if not fnmatch.filter(files, name))
    assert missing == [], f"{doc} names files docs/bench does not have"


def test_every_kept_file_is_named_in_benchmarks_md():
    names = named("BENCHMARKS.md")
    unnamed = [f for f in kept_files() if not any(fnmatch.fnmatch(f, n) for n in names)]
    assert unnamed == [], "name these in BENCHMARKS.md (or delete them)"


SUMMARIES = sorted(KEPT.glob("*.summary.json"))


def test_no_raw_result_is_kept():
    for path in KEPT.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data.get("schema") != RESULT_SCHEMA, f"{path.name}: keep its summary instead"
        assert "timeseries" not in data, path.name


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: p.name)
def test_each_kept_summary_is_a_small_summary_whose_files_are_beside_it(path):
    assert path.stat().st_size < 20_000
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert summary["schema"] == SUMMARY_SCHEMA
    assert summary["checkout"]["commit"] in path.name
    if summary["plot"]:
        assert (KEPT / summary["plot"]).is_file()
    if "/" in summary["raw"]:  # a raw result kept in the repository (a test fixture)
        assert (ROOT / summary["raw"]).is_file()


# (summary, dotted path, the figure as BENCHMARKS.md or README quotes it, rounded as there)
QUOTED = [
    ("2026-12-01-noisy-cc708ea", "e2e_events_per_minute", 5454),
    ("2026-12-02-before-3def120", "api_requests_per_second", 127.5),
    ("2026-12-02-before-3def120", "cost_per_million_events_usd", 3.80),
    ("2026-12-02-after-a73c0af", "api_latency_ms.p99", 276),
    ("2026-12-02-after-a73c0af", "aws_calls_per_event.total", 1.05),
    ("2026-12-02-evening-a73c0af", "e2e_events_per_minute", 31224),
    ("2026-12-02-scaling-ba987ae", "scaling.0.ceiling_events_per_second", 1654),
    ("2026-12-02-sustained500-0281b18", "sustained.p95_latency_last_over_first", 2.75),
    ("2026-12-03-concurrency3-9e7761b", "scaling.2.ratio", 0.815),
    ("2026-12-03-concurrency2-8d67770", "cost_per_million_events_usd", 3.06),
    ("2026-12-03-scaling-44b9d31", "e2e_events_per_minute", 31566),
    ("2026-12-03-two-windows-2c73ffa", "cost.on_the_bus.per_million_events_usd", 2.88),
    ("2026-12-03-estimate-7cda0c5", "cost.with_aws_batching.per_million_events_usd", 2.84),
    ("2026-12-03-intake-4f01087", "e2e_events_per_minute", 49770),
    ("2026-12-03-intake12-4f01087", "pipeline_to_ceiling_ratio", 0.84),
    ("2026-12-03-intake16-burst2000-eb31ea0", "burst.events_per_second", 1007),
    ("2026-12-03-intake-scaling-sustained-eec6ec3", "sustained.windows.latency_ms.p95.1", 494),
    ("2026-12-03-scaling-machine-cpu-ab71433", "scaling.0.pipeline.cpu.machine_ms_per_event", 1.68),
    ("2026-12-03-esm-cap100-experiment-ab71433", "scaling.1.pipeline_events_per_second", 1963),
    ("2026-12-03-esm-batches-55ebfff", "e2e_events_per_minute", 92718),
    ("2026-12-03-esm-batches-intake4-55ebfff", "scaling.2.pipeline_events_per_second", 2559),
    ("2026-12-03-intake4-64ea5cf", "e2e_events_per_minute", 141984),
    ("2026-12-03-intake4-64ea5cf", "peak_rss_mb.lambda_workers", 234),
    ("2026-12-03-sustained500-b4c8960", "sustained.applied_everywhere", 300000),
]


def at(value, dotted):
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.mark.parametrize(("name", "dotted", "quoted"), QUOTED)
def test_a_figure_the_docs_quote_is_what_its_summary_holds(name, dotted, quoted):
    summary = json.loads((KEPT / f"{name}.summary.json").read_text(encoding="utf-8"))
    value = at(summary, dotted)
    digits = max(0, len(str(quoted).partition(".")[2]))
    assert round(value, digits) == quoted
