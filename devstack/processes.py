"""Child processes of `datasync up`: started so they cannot outlive it, and found again if they did.

Every child runs in a session (and process group) of its own, so a terminal's Ctrl-C or a
`kill -TERM -<pgid>` reaches only the supervisor, which then stops the children in order; a
child's own children (gunicorn workers, MiniStack's Lambda workers) share its group, so one
`killpg` reaches them all.

If the supervisor dies without stopping them (SIGKILL, OOM), Linux sends each child a
parent-death signal (``PR_SET_PDEATHSIG``), chosen per child: SIGTERM lets a consumer finish its
batch and MiniStack save its state; Terraform gets SIGINT, its graceful stop. The kernel sends it
when the *thread* that forked the child exits, so children are only started from the main thread.

What was started is also written to ``processes.json`` (the local layout's), so a later run stops
anything that still survived; the start time guards against a reused pid.

Also the one reader of /proc's process files for the tools around the stack (the benchmark, the
soak, the tests). Standard library only: the benchmark's venv imports this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from datasync.local_layout import Started, read_process_file, write_process_file

PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux
        return None


def _arm(prctl: Callable[..., int], sig: int, parent: int | None) -> None:
    prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux for ``sig`` when this process's parent dies (exit at once if ``parent`` is no
    longer it). A helper process calls it first thing (the benchmark's load generator)."""
    prctl = _prctl()
    if prctl is not None:
        _arm(prctl, sig, parent)


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive ``sig`` when this process dies (Linux only)."""
    prctl = _prctl()  # looked up before fork, not in the child
    return None if prctl is None else functools.partial(_arm, prctl, sig, os.getpid())


def spawn(
    command: list[str],
    *,
    log_path: Path | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, output appended to ``log_path`` (None: inherit)."""
    log = log_path.open("ab") if log_path else None
    try:
        return subprocess.Popen(  # noqa: S603 - our own executables
            command, stdout=log, stderr=subprocess.STDOUT if log else None,
            stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True,
            preexec_fn=_parent_death_signal(death_signal),  # noqa: PLW1509 - no threads here
        )  # fmt: skip
    finally:
        if log:
            log.close()


def stop_process(process: subprocess.Popen[bytes], sig: int, grace: float) -> bool:
    """Send ``sig`` and wait up to ``grace`` seconds; SIGKILL after that. True if it stopped
    when asked."""
    process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if there is no such group (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


@dataclass(frozen=True)
class ProcStat:
    """What /proc/<pid>/stat says of one process."""

    pid: int
    state: str  # R, S, D, T, Z (a zombie: exited, not yet reaped) ...
    ppid: int
    pgid: int
    cpu_seconds: float  # utime + stime of the process itself (not of reaped children)
    start_time: int  # clock ticks since boot


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat. The command name (field 2) may contain spaces and parentheses:
    the fields are counted from its closing parenthesis."""
    pid = int(text.split(" ", 1)[0])
    rest = text[text.rindex(")") + 2 :].split()  # rest[0] is field 3, the state
    utime, stime = int(rest[11]), int(rest[12])  # fields 14 and 15
    return ProcStat(
        pid=pid, state=rest[0], ppid=int(rest[1]), pgid=int(rest[2]),
        cpu_seconds=(utime + stime) / CLOCK_TICKS, start_time=int(rest[19]),
    )  # fmt: skip


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None  # gone between listing and reading


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    stat = read_stat(pid)
    return stat.start_time if stat else None


def alive(pid: int) -> bool:
    """Running, or stopped: not gone and not a zombie."""
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"


def _processes() -> Iterable[ProcStat]:
    return (stat for stat in map(read_stat, all_pids()) if stat is not None)


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid``."""
    return [stat.pid for stat in _processes() if stat.pgid == pgid]


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (e.g. gunicorn's workers)."""
    return [stat.pid for stat in _processes() if stat.ppid == pid]


def still_running(started: Started) -> bool:
    """True while this very process (not a later one with a reused pid) is alive."""
    if not group_alive(started.pid):
        return False
    now = start_time(started.pid)
    # The leader may have exited while its group lives on (e.g. orphaned workers): then
    # nothing has the pid back yet, and the group is still ours to stop.
    return now is None or started.start_time is None or now == started.start_time


class ProcessFile:
    """processes.json: what the current run started, for the run after a hard kill."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, processes: Iterable[tuple[str, int]]) -> None:
        started = [Started(name, pid, start_time(pid)) for name, pid in processes]
        write_process_file(self.path, started)

    def read(self) -> list[Started]:
        return read_process_file(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_leftovers(
    process_file: ProcessFile, say: Callable[[str], None], timeout: float = 10
) -> list[str]:
    """Stop what an earlier run left running (it was killed before it could clean up)."""
    alive = [p for p in process_file.read() if still_running(p)]
    if alive:
        names = ", ".join(p.name for p in alive)
        say(f"stopping what an earlier run (killed before it could clean up) left: {names}")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for leftover in alive:
            signal_group(leftover.pid, sig)
        deadline = time.monotonic() + timeout
        while any(group_alive(p.pid) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [p for p in alive if group_alive(p.pid)]
        if not alive:
            break
        say(f"still running after SIGTERM, killing (SIGKILL): {', '.join(p.name for p in alive)}")
    process_file.remove()
    return [p.name for p in alive]


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
