"""`python -m bench summarize RESULT.json ... [--to DIR]`: the summaries of results, to keep.

A result (the raw JSON `make bench` writes under var/bench) holds every sample; its summary
(bench/report.py) holds the figures, a few KB. This writes ``<name>.summary.json`` for each
result into DIR (default: beside it), copies the result's PNG there if there is one beside it,
and prints the summary's text. It needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bench.report import summarize, summary_path, summary_text, write_summary


def keep(raw: Path, to: Path | None) -> Path:
    """Write the summary of ``raw`` (and copy its PNG) into ``to``; the summary's path."""
    result = json.loads(raw.read_text(encoding="utf-8"))
    if not isinstance(result, dict):
        raise ValueError("not a `make bench` result (not a JSON object)")
    folder = to or raw.parent
    png, kept_png = raw.with_suffix(".png"), folder / raw.with_suffix(".png").name
    if png.is_file() and png.resolve() != kept_png.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, kept_png)
    summary = summarize(result, raw=raw.name, plot=kept_png.name if kept_png.is_file() else None)
    print(summary_text(summary))
    return write_summary(summary, folder / summary_path(raw).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench summarize",
        description="Write the summary of each `make bench` result (and copy its PNG beside it).",
    )
    p.add_argument("results", nargs="+", type=Path, help="raw results (var/bench/*.json)")
    p.add_argument("--to", type=Path, help="directory to write into (default: beside each)")
    a = p.parse_args(argv)
    failed = 0
    for raw in a.results:
        if raw.name.endswith(".summary.json"):
            print(f"{raw}: already a summary; give the raw result it came from", file=sys.stderr)
            failed += 1
            continue
        try:
            print(f"wrote {keep(raw, a.to)}")
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            print(f"{raw}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
