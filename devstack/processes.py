"""Child processes of `datasync up`: started so they cannot outlive it, and found again if they did.

Every child runs in a session (and process group) of its own, so a terminal's Ctrl-C or a
`kill -TERM -<pgid>` reaches only the supervisor, which then stops the children in order; a
child's own children (gunicorn workers, MiniStack's Lambda workers) share its group, so one
`killpg` reaches them all.

If the supervisor dies without stopping them (SIGKILL, OOM), Linux sends each child a
parent-death signal (``PR_SET_PDEATHSIG``), chosen per child: SIGTERM lets a consumer finish its
batch and MiniStack save its state; Terraform gets SIGINT, its graceful stop. The kernel sends it
when the *thread* that forked the child exits, so children are only started from the main thread.

What was started is also written to ``processes.json`` (pid, process group, start time), so a
later run stops anything that still survived; the start time guards against a reused pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive ``sig`` when this process dies (Linux only)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


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


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if there is no such group (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(entry.name))
    return members


@dataclass(frozen=True)
class Started:
    """One child as remembered in processes.json."""

    name: str
    pid: int  # also its process group: every child leads a session of its own
    start_time: int | None

    def still_running(self) -> bool:
        """True while this very process (not a later one with a reused pid) is alive."""
        if not group_alive(self.pid):
            return False
        now = start_time(self.pid)
        # The leader may have exited while its group lives on (e.g. orphaned workers): then
        # nothing has the pid back yet, and the group is still ours to stop.
        return now is None or self.start_time is None or now == self.start_time


class ProcessFile:
    """processes.json: what the current run started, for the run after a hard kill."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, processes: Iterable[tuple[str, int]]) -> None:
        entries = [asdict(Started(name, pid, start_time(pid))) for name, pid in processes]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"processes": entries}, indent=1))
        tmp.replace(self.path)

    def read(self) -> list[Started]:
        try:
            entries = json.loads(self.path.read_text())["processes"]
            return [Started(**entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_leftovers(
    process_file: ProcessFile, say: Callable[[str], None], timeout: float = 10
) -> list[str]:
    """Stop what an earlier run left running (it was killed before it could clean up)."""
    alive = [p for p in process_file.read() if p.still_running()]
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
