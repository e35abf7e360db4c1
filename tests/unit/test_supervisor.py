"""The supervisor's parts with fakes: signal bookkeeping, restart backoff, stop ordering."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from devstack.supervisor import (
    RESTART_CAP_SECONDS,
    STABLE_SECONDS,
    StopLatch,
    Stoppable,
    Supervised,
    stop_together,
)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProcess:
    """A child that exits when told to (``exit``) or ``after`` seconds of the fake clock."""

    pids = iter(range(50_000, 60_000))

    def __init__(self, clock: FakeClock, after: float | None = None, code: int = -9):
        self.pid = next(self.pids)
        self.returncode: int | None = None
        self.signals: list[int] = []
        self._clock, self._dies_at, self._code = clock, None, code
        if after is not None:
            self._dies_at = clock() + after

    def poll(self) -> int | None:
        if self.returncode is None and self._dies_at is not None and self._clock() >= self._dies_at:
            self.returncode = self._code
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def exit(self, code: int = -9) -> None:
        self.returncode = code


# -- StopLatch -------------------------------------------------------------------------------
def test_a_signal_is_a_stop_request_and_a_quick_repeat_is_the_same_request():
    clock = FakeClock()
    latch = StopLatch(clock)
    assert not latch.requested and not latch.hurry

    latch.record(signal.SIGTERM)
    clock.advance(0.01)
    latch.record(signal.SIGTERM)  # GNU make forwarding the group's SIGTERM to its child

    assert latch.requested
    assert latch.reason == "SIGTERM received"
    assert not latch.hurry


def test_a_signal_repeated_later_asks_to_hurry_never_to_abort():
    clock = FakeClock()
    latch = StopLatch(clock)
    latch.record(signal.SIGINT)
    clock.advance(1.5)
    latch.record(signal.SIGINT)

    assert latch.hurry
    assert latch.requested and latch.reason == "SIGINT received"  # the first one still counts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_real_signals_are_recorded_and_wake_a_waiting_loop_at_once(sig):
    # What the process had before (a shell's background job inherits SIGINT ignored).
    before = signal.getsignal(signal.SIGINT)
    latch = StopLatch().install()
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), sig)).start()
        started = time.monotonic()
        latch.wait(10)  # the main thread's select wakes on the signal's wakeup byte
        woke_after = time.monotonic() - started
        # The process is alive (no default action, no KeyboardInterrupt) and knows why.
        assert latch.reason == f"{signal.Signals(sig).name} received"
        assert woke_after < 2, f"the wait did not wake on {sig!r} ({woke_after:.1f}s)"
    finally:
        latch.uninstall()
    assert signal.getsignal(signal.SIGINT) is before, "uninstall gives the handler back"


def test_signals_during_a_wait_never_raise_into_the_code_that_waits():
    latch = StopLatch().install()
    try:
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGTERM)
        latch.wait(0.05)
        assert [name for name, _ in latch.signals] == ["SIGTERM"] * 3
    finally:
        latch.uninstall()


def test_an_uninstalled_latch_never_requests_a_stop_and_just_sleeps():
    latch = StopLatch()
    started = time.monotonic()
    latch.wait(0.05)
    assert time.monotonic() - started >= 0.05
    assert not latch.requested


# -- Supervised: restart with backoff --------------------------------------------------------
def supervised(clock, starts, lines, jitter=1.0):
    def start():
        process = starts.pop(0)
        return process

    return Supervised("consumer-crm", start, lines.append, clock=clock, jitter=lambda: jitter)


def test_a_killed_child_is_restarted_within_five_seconds_and_says_so():
    clock = FakeClock()
    lines = []
    first, second = FakeProcess(clock), FakeProcess(clock)
    child = supervised(clock, [first, second], lines)
    child.launch()
    clock.advance(60)
    first.exit(-9)

    assert child.check() is False  # noticed: a restart is scheduled, not done yet
    assert "consumer-crm exited (killed by SIGKILL) after 60.0s; restarting it in 1.0s" in lines[0]
    for _ in range(50):  # the supervisor's loop checks every 0.1 s of (fake) time
        clock.advance(0.1)
        if child.check():
            break
    assert child.process is second
    assert child.restart_at is None and child.restarts == 1
    assert lines[-1] == f"consumer-crm restarted (pid {second.pid})"
    assert clock() - (1000 + 60) <= 5


def test_a_child_that_keeps_crashing_backs_off_exponentially_up_to_the_cap():
    clock = FakeClock()
    lines = []
    crashing = [FakeProcess(clock, after=0.2, code=1) for _ in range(8)]
    child = supervised(clock, list(crashing), lines, jitter=1.0)
    child.launch()
    restarted_at = []
    while len(restarted_at) < 7:
        clock.advance(0.05)
        if child.check():
            restarted_at.append(clock())

    # equal jitter at its top (rng 1.0): the full exponential step, capped at 30 s
    assert child.history == [1.0, 2.0, 4.0, 8.0, 16.0, RESTART_CAP_SECONDS, RESTART_CAP_SECONDS]
    gaps = [b - a for a, b in zip(restarted_at, restarted_at[1:], strict=False)]
    assert all(gap >= delay for gap, delay in zip(gaps, child.history[1:], strict=False))
    assert "crash 7 in a row" in lines[-2] and "exit code 1" in lines[-2]


def test_the_first_restart_is_quick_whatever_the_jitter():
    for jitter in (0.0, 0.5, 1.0):
        child = supervised(FakeClock(), [], [], jitter=jitter)
        assert 0.5 <= child.restart_delay(1) <= 1.0


def test_a_child_that_ran_long_enough_starts_a_new_crash_count():
    clock = FakeClock()
    lines = []
    processes = [FakeProcess(clock, after=0.1) for _ in range(3)] + [FakeProcess(clock)]
    child = supervised(clock, list(processes), lines)
    child.launch()
    while child.restarts < 2:
        clock.advance(0.05)
        child.check()
    assert child.crashes == 2
    stable = FakeProcess(clock, after=STABLE_SECONDS + 1)
    child.start = lambda: stable
    clock.advance(10)
    child.check()  # the third short run dies; restart with the stable one
    while child.process is not stable:
        clock.advance(0.05)
        child.check()
    clock.advance(STABLE_SECONDS + 2)
    child.check()
    assert child.crashes == 1 and child.history[-1] == 1.0


def test_a_child_that_cannot_even_be_started_is_retried_later():
    clock = FakeClock()
    lines = []
    process = FakeProcess(clock)

    def start():
        raise FileNotFoundError("datasync-consumer")

    child = Supervised("consumer-crm", lambda: process, lines.append, clock=clock, jitter=lambda: 1)
    child.launch()
    process.exit(1)
    child.check()
    child.start = start
    clock.advance(1.0)
    assert child.check() is False
    assert "could not be started" in lines[-1]
    assert child.restart_at is not None and child.restart_at > clock()


# -- stop_together: ask all, wait, force the rest ---------------------------------------------
class FakeStoppable:
    def __init__(self, name, clock, stops_after, log):
        self.name, self.clock, self.stops_after, self.log = name, clock, stops_after, log
        self.asked_at = None
        self.forced = False

    def item(self) -> Stoppable:
        return Stoppable(self.name, self.ask, self.force, self.gone)

    def ask(self):
        self.asked_at = self.clock()
        self.log.append(("ask", self.name))

    def force(self):
        if not self.gone():
            self.forced = True
            self.log.append(("force", self.name))

    def gone(self):
        if self.forced:
            return True
        return self.asked_at is not None and self.clock() >= self.asked_at + self.stops_after


def test_everything_is_asked_at_once_and_only_the_late_one_is_killed():
    clock = FakeClock()
    log, lines = [], []
    api = FakeStoppable("api", clock, 0.5, log)
    crm = FakeStoppable("consumer-crm", clock, 3.0, log)
    stuck = FakeStoppable("consumer-analytics", clock, 99.0, log)

    report = stop_together(
        [api.item(), crm.item(), stuck.item()], 20, wait=clock.advance, say=lines.append,
        clock=clock,
    )  # fmt: skip

    assert log[:3] == [("ask", "api"), ("ask", "consumer-crm"), ("ask", "consumer-analytics")]
    assert log[3:] == [("force", "consumer-analytics")]
    assert report.forced == ["consumer-analytics"]
    assert lines == ["consumer-analytics did not stop within 20s: killing it (SIGKILL)"]
    assert 20 <= report.seconds < 21


def test_a_stop_that_goes_well_kills_nothing_and_takes_as_long_as_the_slowest():
    clock = FakeClock()
    log, lines = [], []
    items = [FakeStoppable(n, clock, s, log) for n, s in (("api", 0.4), ("consumer-crm", 4.8))]
    report = stop_together([i.item() for i in items], 20, wait=clock.advance, say=lines.append,
                           clock=clock)  # fmt: skip
    assert report.forced == [] and lines == []
    assert 4.8 <= report.seconds < 5.0


def test_asking_again_makes_the_stop_quicker_but_still_stops_everything():
    clock = FakeClock()
    log, lines = [], []
    crm = FakeStoppable("consumer-crm", clock, 15.0, log)
    asked_again_at = clock() + 2
    report = stop_together(
        [crm.item()], 20, wait=clock.advance, say=lines.append,
        hurry=lambda: clock() >= asked_again_at, clock=clock,
    )  # fmt: skip
    assert report.forced == ["consumer-crm"]
    assert report.seconds < 3
    assert "not waiting for the batches in hand" in lines[0]
