"""Once a second: queue depths, applied counts, CPU and peak memory by process kind.

One thread samples, everything else reads its time series afterwards. A second thread reads
the machine's busy CPU counter ten times a second, so that a burst of two seconds gets its own
figure rather than the average of the whole seconds around it. Per sample it makes one
GetQueueAttributes per intake, buffer and destination queue (the only load it adds to the emulator),
one ``count(*)`` per store, and reads /proc for every process of the stack's process groups.
CPU is attributed per process kind from /proc/<pid>/stat (utime + stime); a process that exits
between two samples loses the CPU it used since the last one (short-lived Lambda workers).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.processes import (
    busy_between,
    classify_cmdline,
    read_hwm_kib,
    read_machine_busy_seconds,
)
from datasync.core.queues import queue_depth
from devstack.processes import all_pids, read_cmdline, read_stat

MACHINE_INTERVAL = 0.1  # seconds between readings of /proc/stat (about 20 us each)


@dataclass
class ProcessSampler:
    """CPU seconds per interval and peak RSS, per kind, for the processes we are told about."""

    groups: Callable[[], list[int]]  # process groups of the stack (re-read: they can change)
    own: dict[int, str] = field(default_factory=dict)  # pid -> kind (the tool's processes)
    last_cpu: dict[int, float] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    hwm_kib: dict[int, int] = field(default_factory=dict)
    started: bool = False

    def sample(self) -> dict[str, float]:
        """CPU seconds used per kind since the previous call (the first call sets the baseline)."""
        groups = set(self.groups())
        used: dict[str, float] = {}
        seen = set()
        for pid in all_pids():
            stat = read_stat(pid)
            if stat is None:
                continue
            kind = self._kind(pid, stat.pgid, groups)
            if kind is None:
                continue
            seen.add(pid)
            previous = self.last_cpu.get(pid)
            # A process first seen after the baseline started during the run: all of its CPU counts.
            delta = (
                stat.cpu_seconds - previous
                if previous is not None
                else (stat.cpu_seconds if self.started else 0.0)
            )
            self.last_cpu[pid] = stat.cpu_seconds
            used[kind] = used.get(kind, 0.0) + max(0.0, delta)
            hwm = read_hwm_kib(pid)
            if hwm is not None:
                self.hwm_kib[pid] = max(hwm, self.hwm_kib.get(pid, 0))
        for gone in set(self.last_cpu) - seen:
            del self.last_cpu[gone]
        self.started = True
        return used

    def _kind(self, pid: int, pgid: int, groups: set[int]) -> str | None:
        if pid in self.own:
            return self.own[pid]
        if pgid in groups or pid in groups:
            if pid not in self.kinds:
                self.kinds[pid] = classify_cmdline(read_cmdline(pid)) or "supervisor"
            return self.kinds[pid]
        return None

    def peak_rss_mb(self) -> dict[str, dict[str, float | int]]:
        by_kind: dict[str, list[int]] = {}
        for pid, hwm in self.hwm_kib.items():
            kind = self.own.get(pid) or self.kinds.get(pid)
            if kind:
                by_kind.setdefault(kind, []).append(hwm)
        return {
            kind: {
                "total": round(sum(values) / 1024, 1),
                "largest_process": round(max(values) / 1024, 1),
                "processes": len(values),
            }
            for kind, values in sorted(by_kind.items())
        }


class Monitor:
    def __init__(
        self,
        stack: Any,
        stores: Any,
        sqs: Any,
        sampler: ProcessSampler,
        interval: float = 1.0,
        progress: bool = True,
    ) -> None:
        self.stack = stack
        self.stores = stores
        self.sqs = sqs
        self.sampler = sampler
        self.interval = interval
        self.progress = progress
        self.samples: list[dict[str, Any]] = []
        self.phase = "idle"
        self.status: Callable[[], str] = lambda: ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._last_line = 0.0
        self._phase_started = time.time()
        self.machine: list[tuple[float, float]] = []  # (time, busy CPU seconds since boot)
        self._machine_thread = threading.Thread(
            target=self._run_machine, name="bench-machine-cpu", daemon=True
        )

    def start(self) -> Monitor:
        self.sampler.sample()
        self._thread.start()
        self._machine_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._machine_thread.join(10)
        if self.progress and sys.stderr.isatty():
            sys.stderr.write("\n")

    def set_phase(self, phase: str, status: Callable[[], str] | None = None) -> None:
        self.phase = phase
        self.status = status or (lambda: "")
        self._phase_started = time.time()

    def depths(self) -> dict[str, dict[str, int]]:
        result = {}
        for destination in self.stack.destinations:
            entry = {}
            for kind, name in (("buffer_queue", "buffer"), ("queue", "queue")):
                url = self.stack.queue_url(destination, kind)
                if url:
                    entry[name] = self._depth(url)
            result[destination] = entry
        intake = self.stack.env.get("DATASYNC_INTAKE_QUEUE_URL")
        if intake:  # every live event passes it once, before any destination's queues
            result["intake"] = {"buffer": self._depth(intake)}
        return result

    def _depth(self, url: str) -> int:
        return sum(queue_depth(self.sqs, url).values())  # waiting and in flight

    def _run(self) -> None:
        previous = time.time()
        while not self._stop.wait(max(0.0, previous + self.interval - time.time())):
            now = time.time()
            try:
                sample = {
                    "t": now,
                    "phase": self.phase,
                    "cpu_seconds": self.sampler.sample(),
                    "interval": now - previous,
                    "applied": self.stores.counts(),
                    "depth": self.depths(),
                }
            except Exception as exc:  # noqa: BLE001 - a missed sample must not end the run
                sample = {"t": now, "phase": self.phase, "error": f"{type(exc).__name__}: {exc}"}
            previous = now
            self.samples.append(sample)
            self._print(sample)

    def _run_machine(self) -> None:
        while True:
            busy = read_machine_busy_seconds()
            if busy is not None:
                self.machine.append((time.time(), busy))
            if self._stop.wait(MACHINE_INTERVAL):
                return

    def _print(self, sample: dict[str, Any]) -> None:
        if not self.progress:
            return
        tty = sys.stderr.isatty()
        if not tty and sample["t"] - self._last_line < 10:
            return
        self._last_line = sample["t"]
        applied = sample.get("applied", {})
        depth = sample.get("depth", {})
        cores = sum(sample.get("cpu_seconds", {}).values()) / max(sample.get("interval", 1), 1e-6)
        line = (
            f"[{self.phase} {sample['t'] - self._phase_started:4.0f}s] {self.status()}"
            f" applied {'/'.join(str(applied.get(d, 0)) for d in self.stack.destinations)}"
            f" depth buf {sum(d.get('buffer', 0) for d in depth.values())}"
            f" q {sum(d.get('queue', 0) for d in depth.values())}"
            f" cpu {cores:.2f}/{os.cpu_count()} cores"
        )
        sys.stderr.write(("\r" + line.ljust(120)) if tty else line + "\n")
        sys.stderr.flush()

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        return [
            s for s in self.samples if start < s["t"] <= end + self.interval and "cpu_seconds" in s
        ]

    def phase_cpu(self, start: float, end: float, events: int) -> dict[str, Any]:
        """How busy the machine was over a phase, and each kind's CPU per event in it.

        ``cores_busy`` and ``machine_ms_per_event`` cover exactly ``start`` to ``end`` and every
        process of the machine (ours included): they say whether the phase was bound by CPU.
        The per-kind figures come from the once-a-second samples, so a phase is widened to whole
        samples for them: ``seconds`` says how long they cover.
        """
        samples = self.window(start, end)
        busy = busy_between(self.machine, start, end)
        by_kind = _cpu_by_kind(samples)
        events = max(events, 1)
        return {
            "seconds": round(sum(s["interval"] for s in samples), 2),
            "cores_busy": None if busy is None else round(busy / (end - start), 2),
            "machine_ms_per_event": None if busy is None else round(1000 * busy / events, 3),
            "ms_per_event": {
                kind: round(1000 * value / events, 3) for kind, value in sorted(by_kind.items())
            },
        }

    def cpu_seconds(self, start: float, end: float) -> dict[str, float]:
        return _cpu_by_kind(self.window(start, end))


def _cpu_by_kind(samples: list[dict[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for sample in samples:
        for kind, seconds in sample["cpu_seconds"].items():
            totals[kind] = totals.get(kind, 0.0) + seconds
    return totals
