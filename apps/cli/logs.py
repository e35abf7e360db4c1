"""`datasync logs [-f] [component]`: the logs of `make run`, one readable line per JSON line.

Every runtime writes JSON lines with the fields of docs/observability.md; this renders them
as ``time level service message key=value…`` (``--raw`` keeps the JSON). Lines that are not
JSON (the emulator's own) are printed as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from apps.cli import common
from datasync.core import exit_codes

# Shown first and in this order; every other field follows as key=value.
LEADING = ("time", "level", "service", "logger", "message")
ALIASES = {"emulator": "ministack"}
POLL_SECONDS = 0.25

EXAMPLES = """\
examples:
  datasync logs                      # the last 100 lines of every component, merged by time
  datasync logs -f consumer-crm      # follow one component (Ctrl-C stops)
  datasync logs api -n 20 --raw      # the JSON lines as written
  datasync logs -f | grep 6f1c2b9e   # follow one correlation id through every hop

components: api, consumer-<destination>, emulator (MiniStack), or a log file's name in
var/local/logs (DATASYNC_VAR_DIR moves it).
"""


def register(commands: Any) -> None:
    logs = commands.add_parser(
        "logs", help="show (or follow) the logs of `make run`", epilog=EXAMPLES
    )
    logs.add_argument("component", nargs="?", help="api, consumer-<destination>, emulator …")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=100, help="last N lines (default 100)")
    logs.add_argument("--raw", action="store_true", help="the JSON lines as written")
    logs.set_defaults(func=cmd_logs)


def render(line: str, prefix: str = "") -> str:
    """One JSON log line as ``time level service message key=value…``; other text as is."""
    try:
        fields = json.loads(line)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        return f"{prefix}{line}"
    moment = str(fields.get("time", ""))
    moment = moment[11:23] if len(moment) >= 23 else moment  # HH:MM:SS.mmm of the ISO time
    head = [
        moment,
        f"{fields.get('level', ''):<5}",
        str(fields.get("service", "")),
        str(fields.get("message", "")),
    ]
    rest = [_pair(key, value) for key, value in fields.items() if key not in LEADING]
    return prefix + " ".join(part for part in head + rest if part)


def _pair(key: str, value: Any) -> str:
    if key == "events" and isinstance(value, dict):  # {"applied": ["eid/cid", …]}: counts
        return "events=" + ",".join(f"{outcome}:{len(ids)}" for outcome, ids in value.items())
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"))
    return f"{key}={value}"


def log_files(logs_dir: Path, component: str | None) -> list[Path]:
    if component is None:
        return sorted(logs_dir.glob("*.log"))
    path = logs_dir / f"{ALIASES.get(component, component)}.log"
    return [path] if path.is_file() else []


def _time_of(line: str) -> str:
    try:
        return str(json.loads(line).get("time", ""))
    except (ValueError, AttributeError):
        return ""


def last_lines(files: list[Path], count: int) -> list[tuple[str, str]]:
    """The last ``count`` (component, line) pairs, several files merged by their time field
    (a line without one keeps the time of the line before it in its file)."""
    keyed = []
    for path in files:
        moment = ""
        for index, line in enumerate(path.read_text(errors="replace").splitlines()):
            moment = _time_of(line) or moment
            keyed.append((moment, path.stem, index, line))
    keyed.sort()
    return [(stem, line) for _, stem, _, line in keyed[-count:]] if count > 0 else []


def follow(
    files: list[Path], stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[str, str]]:
    """New complete lines of the files, written from now on, until ``stop()`` (or Ctrl-C)."""
    offsets = {path: path.stat().st_size for path in files}  # now, not at the first next()
    return _new_lines(files, offsets, stop)


def _new_lines(
    files: list[Path], offsets: dict[Path, int], stop: Callable[[], bool]
) -> Iterator[tuple[str, str]]:
    pending = {path: "" for path in files}
    while not stop():
        for path in files:
            size = path.stat().st_size if path.exists() else 0
            if size < offsets[path]:  # recreated (a fresh `make run`): from its start
                offsets[path], pending[path] = 0, ""
            if size == offsets[path]:
                continue
            with path.open("r", errors="replace") as handle:
                handle.seek(offsets[path])
                chunk = handle.read()
                offsets[path] = handle.tell()
            *complete, pending[path] = (pending[path] + chunk).split("\n")
            for line in complete:
                yield path.stem, line
        time.sleep(POLL_SECONDS)


def cmd_logs(args: argparse.Namespace) -> int:
    logs_dir = common.settings().logs_dir
    files = log_files(logs_dir, args.component)
    if not files:
        what = f"no {args.component} log" if args.component else "no logs"
        known = ", ".join(p.stem for p in sorted(logs_dir.glob("*.log"))) or "none yet"
        print(
            f"datasync: {what} in {logs_dir} (there: {known}); `make run` writes them",
            file=sys.stderr,
        )
        return exit_codes.ABSENT
    several = len(files) > 1

    def show(stem: str, line: str) -> None:
        prefix = f"{stem:<18} " if several else ""
        print(f"{prefix}{line}" if args.raw else render(line, prefix), flush=True)

    for stem, line in last_lines(files, args.lines):
        show(stem, line)
    if args.follow:
        try:
            for stem, line in follow(files):
                show(stem, line)
        except KeyboardInterrupt:
            pass
    return exit_codes.OK
