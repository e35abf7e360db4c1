"""The embedded AWS emulator (MiniStack): start it, wait for health, stop it so it saves its state.

MiniStack lives in its own virtual environment (it pins botocore exactly, which would fight
the project's boto3). It runs Python Lambda handlers as local processes with that
environment's interpreter, so that venv also has boto3 - like AWS's Python runtimes.

Persistence (``PERSIST_STATE=1``, ``STATE_DIR``): MiniStack 1.5.33 loads its state at start-up
and writes it only on a graceful shutdown (the ASGI lifespan shutdown that SIGTERM triggers
through hypercorn), in about 2 s. A SIGKILLed MiniStack loses everything since it started, so it
is stopped with SIGTERM and given time; its Lambda workers (its own children, reading events on
stdin) exit when it does.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from datasync.local_layout import Layout
from devstack.processes import spawn, stop_process
from devstack.settings import StackSettings
from devstack.supervisor import StopLatch, Stoppable, StopRequested, group_stoppable

HEALTH_PATH = "/_localstack/health"  # served by MiniStack and LocalStack alike
# hypercorn waits up to 3 s for open requests (consumers' long polls), then MiniStack saves.
STOP_SECONDS = 8


class EmulatorError(RuntimeError):
    pass


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen[bytes] | None = None  # None: someone else runs it (LocalStack)
    state_dir: Path | None = None  # where MiniStack keeps its state between runs

    def stoppable(self) -> Stoppable | None:
        if self.process is None:
            return None
        # SIGTERM to MiniStack alone: it saves its state, and its Lambda workers see their
        # stdin close and exit; the group gets SIGKILL only as the last resort.
        return group_stoppable("the emulator", self.process)

    def saved_since(self, moment: float) -> bool:
        """Did MiniStack write its state files after ``moment`` (time.time())?"""
        if self.state_dir is None:
            return False
        return any(p.stat().st_mtime >= moment for p in self.state_dir.glob("*.json"))


def fresh_tmp_dir(state_dir: Path) -> Path:
    """An empty TMPDIR for MiniStack beside its state.

    MiniStack unpacks every Lambda worker into a temp dir of its own (14 MB for ours) and does
    not remove it when it is stopped: in /tmp that leaks ~130 MB per run. Here the next start
    (or `make clean-state`) removes what the last run left.
    """
    tmp_dir = state_dir.parent / f"{state_dir.name}-tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    return tmp_dir


def has_saved_state(state_dir: Path) -> bool:
    return any(state_dir.glob("*.json"))


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + HEALTH_PATH, timeout=2) as response:  # noqa: S310
            return response.status == 200 and isinstance(json.load(response), dict)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start_ministack(
    settings: StackSettings,
    layout: Layout,
    *,
    env: dict[str, str],
    latch: StopLatch,
    timeout: float = 60,
) -> Emulator:
    """Start MiniStack on the layout's port, with its state and log there; ``env`` is the base
    environment."""
    log_path, state_dir = layout.emulator_log, layout.emulator_state_dir
    executable = settings.ministack_executable
    if not executable.exists():
        raise EmulatorError(
            f"MiniStack is not installed at {settings.ministack_venv}: run `make tools` "
            "(or `make run`)"
        )
    port = layout.emulator_port
    if port_in_use("127.0.0.1", port):
        raise EmulatorError(
            f"port {port} is already in use: is another `make run` (or LocalStack) running? "
            "Stop it, or pick another port with DATASYNC_EMULATOR_PORT, or reuse a running "
            "LocalStack-compatible emulator with DATASYNC_AWS_ENDPOINT_URL=http://host:port"
        )
    url = layout.emulator_url
    child_env = {
        key: value
        for key, value in env.items()
        if not key.startswith(("AWS_", "DATASYNC_", "VIRTUAL_ENV"))
    }
    child_env.update(
        {
            # Handlers are started as `python3`: make that MiniStack's interpreter.
            "PATH": f"{settings.ministack_venv / 'bin'}:{child_env.get('PATH', '')}",
            "GATEWAY_PORT": str(port),
            "BIND_HOST": layout.emulator_host,
            "AWS_ENDPOINT_URL": url,
            "LAMBDA_EXECUTOR": "local",
            "LOG_LEVEL": settings.ministack_log_level,
            "PERSIST_STATE": "1",
            "STATE_DIR": str(state_dir),
            "TMPDIR": str(fresh_tmp_dir(state_dir)),
            # Not used here: skip their imports and listeners (IoT would bind port 8883).
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
        }
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    process = spawn(settings.ministack_command, log_path=log_path, env=child_env)
    emulator = Emulator(url, process, state_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not latch.requested:
        if process.poll() is not None:
            raise EmulatorError(f"MiniStack exited with code {process.returncode}; see {log_path}")
        if is_healthy(url):
            return emulator
        latch.wait(0.2)
    stop_process(process, signal.SIGTERM, STOP_SECONDS)
    if latch.requested:
        raise StopRequested(latch.reason)
    raise EmulatorError(f"MiniStack did not become healthy in {timeout:.0f}s; see {log_path}")
