"""Which kind of pipeline process a pid is, and what /proc says about the machine and memory.

Kinds are what a reader of the result cares about: the API (gunicorn master and workers),
MiniStack itself, MiniStack's Lambda worker processes, the consumers, and the tool's own
processes (load generator, monitor). A process's own /proc files (stat, cmdline) are read by
devstack/processes.py, the one reader of them; only /proc text is parsed here, so it is
unit-testable.
"""

from __future__ import annotations

from pathlib import Path

from devstack.processes import CLOCK_TICKS

KINDS = ("api", "ministack", "lambda_workers", "consumers", "load_generator", "bench")


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


def read_hwm_kib(pid: int) -> int | None:
    try:
        return parse_hwm_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
