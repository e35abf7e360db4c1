"""The supervisor's moving parts, free of the stack they supervise (unit-tested with fakes).

- ``StopLatch``: SIGINT, SIGTERM and SIGHUP only *record* a stop request and wake the main loop
  (``signal.set_wakeup_fd``); nothing is raised into whatever code runs at that moment, so a
  stop can never be interrupted half-way. GNU make forwards the SIGTERM its group received, so
  the same request often arrives twice within milliseconds: one second after the first signal,
  a repeated one means "hurry" (don't wait for the consumers' batches), never "abort the stop".
- ``Supervised``: one restartable child (API, consumer). When it exits without being asked to,
  it is started again after ``backoff_delay`` (0.5-1 s the first time, doubling to 15-30 s
  while it keeps crashing; a run of ``STABLE_SECONDS`` resets the count).
- ``stop_in_order``: the apps first, in parallel (each gets SIGTERM and finishes what it holds),
  then the emulator with time to save its state; SIGKILL only when a budget runs out, and said.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from datasync.core.retry import backoff_delay
from devstack.processes import exit_description, group_alive, signal_group

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DUPLICATE_WINDOW_SECONDS = 1.0  # a signal this soon after the first is the same request
RESTART_BASE_SECONDS = 1.0
RESTART_CAP_SECONDS = 30.0
STABLE_SECONDS = 30.0  # a child that ran this long before exiting starts a new crash count

Clock = Callable[[], float]
Say = Callable[[str], None]


class StopRequested(Exception):  # noqa: N818 - not an error: the user asked to stop
    """Raised by our own waiting loops (never by a signal handler) to abandon a start."""


class Process(Protocol):
    """What the supervisor needs of a child (subprocess.Popen has it)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...


class StopLatch:
    """Records stop signals; ``wait`` sleeps until a timeout or the next signal."""

    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self.signals: list[tuple[str, float]] = []  # (name, clock time), in arrival order
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous: dict[int, object] = {}
        self._previous_wakeup_fd = -1

    # -- bookkeeping (what the signal handler does; tests call it directly) ------------------
    def record(self, signum: int) -> None:
        self.signals.append((signal.Signals(signum).name, self._clock()))

    @property
    def requested(self) -> bool:
        return bool(self.signals)

    @property
    def reason(self) -> str:
        return f"{self.signals[0][0]} received" if self.signals else "no stop requested"

    @property
    def hurry(self) -> bool:
        """A signal came again after the duplicate window: the user insists."""
        if not self.signals:
            return False
        first = self.signals[0][1]
        return any(at - first > DUPLICATE_WINDOW_SECONDS for _, at in self.signals[1:])

    # -- the real signals --------------------------------------------------------------------
    def install(self) -> StopLatch:
        """Handle SIGINT/SIGTERM/SIGHUP from now on (main thread only)."""
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(
            self._writer.fileno(), warn_on_full_buffer=False
        )
        for sig in STOP_SIGNALS:
            # Replaces SIG_IGN too: a job started in the background by a non-interactive
            # shell inherits SIGINT ignored, and Ctrl-C must still mean "stop".
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for end in (self._reader, self._writer):
            if end is not None:
                end.close()
        self._reader = self._writer = None

    def _handle(self, signum: int, _frame: object) -> None:
        self.record(signum)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a signal ends the sleep at once (via the wakeup fd)."""
        if seconds <= 0:
            return
        if self._reader is None:
            time.sleep(seconds)
            return
        with contextlib.suppress(InterruptedError):
            select.select([self._reader], [], [], seconds)
        with contextlib.suppress(BlockingIOError, OSError):
            while self._reader.recv(512):
                pass


@dataclass
class Supervised:
    """A child that is restarted whenever it exits while the stack runs."""

    name: str
    start: Callable[[], Process]
    say: Say
    log_hint: str = ""
    clock: Clock = time.monotonic
    jitter: Callable[[], float] | None = None  # None: random; tests pass a fixed value
    process: Process | None = None
    started_at: float = 0.0
    crashes: int = 0  # consecutive exits of short-lived runs
    restart_at: float | None = None
    restarts: int = 0
    history: list[float] = field(default_factory=list)  # restart delays chosen, for tests

    def launch(self) -> Process:
        self.process = self.start()
        self.started_at = self.clock()
        self.restart_at = None
        return self.process

    def check(self) -> bool:
        """Notice an exit, restart when due; True when a (re)start happened."""
        now = self.clock()
        if self.restart_at is not None:
            if now < self.restart_at:
                return False
            try:
                process = self.launch()
            except OSError as exc:  # e.g. the executable vanished: try again later
                self.crashes += 1
                self.restart_at = now + self.restart_delay(self.crashes)
                self.say(f"{self.name} could not be started ({exc}); trying again")
                return False
            self.restarts += 1
            self.say(f"{self.name} restarted (pid {process.pid})")
            return True
        if self.process is None or self.process.poll() is None:
            return False
        ran = now - self.started_at
        self.crashes = 1 if ran >= STABLE_SECONDS else self.crashes + 1
        delay = self.restart_delay(self.crashes)
        self.history.append(delay)
        self.restart_at = now + delay
        self.say(
            f"{self.name} exited ({exit_description(self.process.returncode)}) after {ran:.1f}s; "
            f"restarting it in {delay:.1f}s (crash {self.crashes} in a row{self.log_hint})"
        )
        return False

    def restart_delay(self, crashes: int) -> float:
        kwargs = {"rng": self.jitter} if self.jitter else {}
        return backoff_delay(crashes, base=RESTART_BASE_SECONDS, cap=RESTART_CAP_SECONDS, **kwargs)

    @property
    def running(self) -> Process | None:
        """The child's process if it has not exited (and no restart is pending)."""
        if self.restart_at is None and self.process is not None and self.process.poll() is None:
            return self.process
        return None


@dataclass
class Stoppable:
    """One thing to stop: how to ask it, how to force it, how to tell it is gone."""

    name: str
    ask: Callable[[], None]  # e.g. SIGTERM to the process
    force: Callable[[], None]  # SIGKILL to its whole group
    gone: Callable[[], bool]


@dataclass
class StopReport:
    forced: list[str] = field(default_factory=list)
    seconds: float = 0.0


def stop_together(
    items: Sequence[Stoppable],
    budget: float,
    *,
    wait: Callable[[float], None],
    say: Say,
    hurry: Callable[[], bool] = lambda: False,
    clock: Clock = time.monotonic,
) -> StopReport:
    """Ask every item to stop at once, wait up to ``budget``; force the rest (and say so)."""
    started = clock()
    report = StopReport()
    for item in items:
        item.ask()
    deadline = started + budget
    hurried = False
    while not all(item.gone() for item in items) and clock() < deadline:
        if hurry() and not hurried:
            hurried = True
            say("asked again: not waiting for the batches in hand (SIGKILL)")
            break
        wait(min(0.1, max(0.0, deadline - clock())))
    for item in items:
        if not item.gone():
            if not hurried:
                say(f"{item.name} did not stop within {budget:.0f}s: killing it (SIGKILL)")
            item.force()
            report.forced.append(item.name)
    # Forced processes die at once, but the kernel needs a moment to reap them.
    settle = clock() + 5
    while not all(item.gone() for item in items) and clock() < settle:
        wait(0.05)
    # Whatever was not forced has stopped by itself; leftovers of its group go too.
    for item in items:
        item.force()
    report.seconds = clock() - started
    return report


def group_stoppable(name: str, process: Process, ask: int = signal.SIGTERM) -> Stoppable:
    """A child and its process group: ``ask`` to the child, SIGKILL to the group."""

    def ask_it() -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(ask)

    def gone() -> bool:
        return process.poll() is not None and not group_alive(process.pid)

    return Stoppable(name, ask_it, lambda: signal_group(process.pid, signal.SIGKILL), gone)
