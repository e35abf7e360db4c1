"""The embedded AWS emulator (MiniStack): start it, wait for health, stop it and its children.

MiniStack lives in its own virtual environment (it pins botocore exactly, which would fight
the project's boto3). It runs Python Lambda handlers as local processes with that
environment's interpreter, so that venv also has boto3 - like AWS's Python runtimes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from apps.cli.paths import MINISTACK_VENV

HEALTH_PATH = "/_localstack/health"  # served by MiniStack and LocalStack alike


class EmulatorError(RuntimeError):
    pass


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen[bytes] | None = None  # None: someone else runs it (LocalStack)

    def stop(self, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # MiniStack's Lambda workers are its children: signal the whole process group.
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(5)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


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


def start_ministack(host: str, port: int, log_path: Path, timeout: float = 60) -> Emulator:
    executable = MINISTACK_VENV / "bin" / "ministack"
    if not executable.exists():
        raise EmulatorError(
            f"MiniStack is not installed at {MINISTACK_VENV}: run `make tools` (or `make run`)"
        )
    if port_in_use("127.0.0.1", port):
        raise EmulatorError(
            f"port {port} is already in use: is another `make run` (or LocalStack) running? "
            "Stop it, or pick another port with DATASYNC_EMULATOR_PORT, or reuse a running "
            "LocalStack-compatible emulator with DATASYNC_AWS_ENDPOINT_URL=http://host:port"
        )
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DATASYNC_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            # Handlers are started as `python3`: make that MiniStack's interpreter.
            "PATH": f"{MINISTACK_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "GATEWAY_PORT": str(port),
            "BIND_HOST": host,
            "AWS_ENDPOINT_URL": url,
            "LAMBDA_EXECUTOR": "local",
            "LOG_LEVEL": env.get("MINISTACK_LOG_LEVEL", "WARNING"),
        }
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own pinned executable
            [str(executable)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    emulator = Emulator(url, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(f"MiniStack exited with code {process.returncode}; see {log_path}")
        if is_healthy(url):
            return emulator
        time.sleep(0.25)
    emulator.stop()
    raise EmulatorError(f"MiniStack did not become healthy in {timeout:.0f}s; see {log_path}")
