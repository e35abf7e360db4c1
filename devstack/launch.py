"""`datasync up` as a child process: started in a layout of its own, waited for, stopped.

The benchmark (which may start another checkout's `datasync up`: BENCH_REPO) and the soak start
their stacks this way, and then see them only as a user does: the layout's files, the API, the
emulator, the processes. The child leads a session of its own (a terminal's Ctrl-C reaches the
tool, which then stops the stack in order) and gets SIGTERM if the tool dies, so it stops even
when the tool is killed. Standard library only: the benchmark's venv imports this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from datasync.local_layout import Layout, Started, read_env_file, read_process_file
from datasync.local_layout import wait_until_ready as wait_for_api
from devstack.processes import signal_group, spawn

READY_TIMEOUT_SECONDS = 900  # terraform apply takes 75-120 s on a quiet machine, more when busy
STOP_SECONDS = 60
NOTE_EVERY_SECONDS = 15
# Settings of the caller's shell that would point the child elsewhere: another stack's env file,
# an emulator someone else runs. A launched stack always has its own.
NOT_INHERITED = ("DATASYNC_ENV_FILE", "DATASYNC_AWS_ENDPOINT_URL")


class LaunchError(RuntimeError):
    pass


@dataclass
class LaunchedStack:
    layout: Layout
    process: subprocess.Popen[bytes]
    log_path: Path  # `datasync up`'s own output

    def wait_until_ready(
        self, timeout: float = READY_TIMEOUT_SECONDS, say: Callable[[str], None] | None = None
    ) -> None:
        """Until the API is ready (the env file is written before the apps start); a note every
        15 s to ``say``."""
        started = last_note = time.monotonic()

        def check() -> None:
            nonlocal last_note
            if self.process.poll() is not None:
                raise LaunchError(
                    f"`datasync up` exited with code {self.process.returncode} before the stack "
                    f"was ready; see {self.log_path}:\n{self.tail(15)}"
                )
            if say and time.monotonic() - last_note > NOTE_EVERY_SECONDS:
                last_note = time.monotonic()
                waited = time.monotonic() - started
                say(f"waiting for the stack ({waited:.0f}s): {self.tail(1)[:120]}")

        try:
            wait_for_api(self.layout.api_url, timeout, check=check, interval=1)
        except TimeoutError:
            raise LaunchError(
                f"the stack was not ready after {timeout:.0f}s; see {self.log_path}"
            ) from None
        if not self.layout.env_file.is_file():
            raise LaunchError(f"the API is up but {self.layout.env_file} is missing")

    def env(self) -> dict[str, str]:
        """The settings the stack wrote for its apps (datasync.env)."""
        return read_env_file(self.layout.env_file)

    def children(self) -> list[Started]:
        """What `datasync up` runs now (processes.json): api, consumer-<d>, emulator."""
        return read_process_file(self.layout.process_file)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM (`datasync up` stops everything it started, in order); SIGKILL to every
        group it recorded if it has not finished within ``timeout``."""
        if self.process.poll() is not None:
            return
        groups = [child.pid for child in self.children()] + [self.process.pid]
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for group in groups:
                signal_group(group, signal.SIGKILL)
            self.process.wait(10)

    def tail(self, lines: int) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def launch(
    datasync: Path,
    layout: Layout,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LaunchedStack:
    """Start ``<datasync> up`` for ``layout``; ``env`` is the base environment (default: ours)."""
    if not datasync.exists():
        raise LaunchError(f"{datasync} not found: run `make tools` in its checkout first")
    child_env = {k: v for k, v in (os.environ if env is None else env).items()}
    for name in NOT_INHERITED:
        child_env.pop(name, None)
    child_env.update(layout.environment())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")  # this run's output only
    process = spawn([str(datasync), "up"], log_path=log_path, env=child_env, cwd=cwd)
    return LaunchedStack(layout, process, log_path)
