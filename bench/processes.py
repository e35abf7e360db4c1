"""Which kind of pipeline process a pid is, and what /proc says about its CPU and memory.

Kinds are what a reader of the result cares about: the API (gunicorn master and workers),
MiniStack itself, MiniStack's Lambda worker processes, the consumers, and the tool's own
processes (load generator, monitor). Only /proc text is parsed here, so it is unit-testable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass
from pathlib import Path

KINDS = ("api", "ministack", "lambda_workers", "consumers", "load_generator", "bench")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def die_with_parent() -> None:
    """Linux: SIGTERM when the parent dies, so no helper outlives the tool (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def classify_cmdline(argv: list[str]) -> str | None:
    """The kind of a pipeline process from its command line, or None if it is not one."""
    text = " ".join(argv)
    if "ministack-lambda-" in text or text.endswith("_worker.py") or "/_worker.py" in text:
        return "lambda_workers"
    if "gunicorn" in text:
        return "api"
    if "datasync-consumer" in text or "apps.consumers" in text:
        return "consumers"
    # bin/ministack, or our entry point for it (devstack/ministack_main.py; apps/cli/ before)
    if any(Path(arg).name in ("ministack", "ministack_main.py") for arg in argv[:2]):
        return "ministack"
    return None


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgid: int
    cpu_seconds: float  # utime + stime of the process itself (not of reaped children)


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat. The command name may contain spaces and parentheses."""
    pid = int(text.split(" ", 1)[0])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    ppid, pgid = int(rest[1]), int(rest[2])
    utime, stime = int(rest[11]), int(rest[12])
    return ProcStat(pid, ppid, pgid, (utime + stime) / CLOCK_TICKS)


def parse_hwm_kib(status_text: str) -> int | None:
    """VmHWM (peak resident set size) in KiB from /proc/<pid>/status, or None (kernel threads)."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def parse_machine_cpu(text: str) -> tuple[float, float]:
    """Busy and total CPU seconds of all cores since boot, from /proc/stat's ``cpu`` line.

    Idle and iowait are not busy; guest time is already inside user time, so only the first
    eight fields (user nice system idle iowait irq softirq steal) are summed.
    """
    fields = text.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("/proc/stat does not start with the aggregate cpu line")
    ticks = [int(value) for value in fields[1:9]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks)
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def busy_between(readings: list[tuple[float, float]], start: float, end: float) -> float | None:
    """CPU seconds the whole machine was busy from ``start`` to ``end``.

    ``readings`` are (time, busy seconds since boot) in time order; the counter is interpolated
    linearly between the two readings around each end. None unless readings cover the window.
    """

    def at(moment: float) -> float | None:
        for (t0, b0), (t1, b1) in zip(readings, readings[1:], strict=False):
            if t0 <= moment <= t1:
                return b0 if t1 == t0 else b0 + (b1 - b0) * (moment - t0) / (t1 - t0)
        return None

    first, last = at(start), at(end)
    return None if first is None or last is None or end <= start else last - first


def read_machine_busy_seconds() -> float | None:
    try:
        return parse_machine_cpu(Path("/proc/stat").read_text())[0]
    except (OSError, ValueError, IndexError):
        return None


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None  # gone between listing and reading


def read_hwm_kib(pid: int) -> int | None:
    try:
        return parse_hwm_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]
