"""The pipeline under test: a `datasync up` this tool starts (and always stops), or a running one.

Started: ``<repo>/.venv/bin/datasync up`` as a subprocess with its own var dir and free ports
(never 4566/8080), in a session of its own (Ctrl-C reaches this tool, which then stops the
stack in order), and with PR_SET_PDEATHSIG so that it stops even if this tool is killed.
Running: the settings `datasync up` wrote (``var/local/datasync.env``) and the process groups
it recorded (``processes.json`` beside it). Either way the tool sees the stack only as a user
does: the env file, the API URL, the emulator endpoint, the stores and the processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import die_with_parent

READY_TIMEOUT_SECONDS = 900  # terraform apply takes 75-120 s on a quiet machine, more when busy
STOP_TIMEOUT_SECONDS = 60


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as `datasync up` writes them (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip().strip("'\"")
    return env


def destinations_of(env: dict[str, str]) -> list[str]:
    """Destinations from the settings names (DATASYNC_<DEST>_QUEUE_URL), in a stable order."""
    names = [
        key[len("DATASYNC_") : -len("_QUEUE_URL")].lower()
        for key in env
        if key.startswith("DATASYNC_")
        and key.endswith("_QUEUE_URL")
        and not key.endswith(("_DLQ_URL", "_BUFFER_QUEUE_URL"))
        and not key.startswith("DATASYNC_INTAKE_")
    ]
    return sorted(n for n in names if n and "_" not in n)


@dataclass
class Stack:
    api_url: str
    api_key: str
    env_file: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None  # None: someone else runs it
    log_path: Path | None = None

    @property
    def destinations(self) -> list[str]:
        return destinations_of(self.env)

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def emulator_log(self) -> Path:
        """Where `datasync up` sends MiniStack's output (var/local/logs/ministack.log)."""
        return self.env_file.parent / "logs" / "ministack.log"

    def queue_url(self, destination: str, kind: str = "QUEUE") -> str | None:
        return self.env.get(f"DATASYNC_{destination.upper()}_{kind}_URL")

    def process_groups(self) -> list[int]:
        """The process groups `datasync up` recorded (API, consumers, emulator)."""
        groups = process_groups_in(self.env_file.parent / "processes.json")
        if self.process is not None:
            groups.append(self.process.pid)
        return groups

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        groups = self.process_groups()
        self.process.send_signal(signal.SIGTERM)  # datasync up stops everything it started
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            for group in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            self.process.wait(10)


# What devstack/ministack_main.py writes to the emulator's log as MiniStack starts (the tool
# imports nothing from the checkout it measures, so the wording is matched here).
_ENTRY_POINT_LINE = re.compile(r"take up to (\d+) messages per batch|left as shipped")
MINISTACK_BATCH_LIMIT = 10  # MiniStack as shipped


def emulator_batch_limit(log: Path) -> int | None:
    """The largest batch the emulator's event source mappings hand a function, as its log says.

    The last start's line from our entry point decides; MiniStack's own 10 when the log has no
    such line (an older checkout) or it says MiniStack was left as shipped; None without a log
    (an emulator someone else runs: LocalStack honours BatchSize).
    """
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    lines = _ENTRY_POINT_LINE.findall(text)  # the captured limit, or "" for "left as shipped"
    return int(lines[-1]) if lines and lines[-1] else MINISTACK_BATCH_LIMIT


def process_groups_in(path: Path) -> list[int]:
    """Process groups from `datasync up`'s processes.json, in either format it has written:
    ``{"process_groups": [pgid, ...]}`` or ``{"processes": [{"name", "pid", ...}]}`` (every
    child leads a session of its own, so its pid is its group)."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if isinstance(recorded.get("process_groups"), list):
        return [int(g) for g in recorded["process_groups"]]
    return [
        int(p["pid"]) for p in recorded.get("processes", []) if isinstance(p, dict) and "pid" in p
    ]


def start_stack(
    repo: Path,
    var_dir: Path,
    *,
    build_dir: Path,
    extra_env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
    say=print,
) -> Stack:
    """`datasync up` on free ports in ``var_dir`` (its stores wiped first); waits until ready."""
    datasync = repo / ".venv" / "bin" / "datasync"
    if not datasync.exists():
        raise StackError(f"{datasync} not found: run `make tools` in {repo} first")
    shutil.rmtree(var_dir / "stores", ignore_errors=True)
    shutil.rmtree(var_dir / "local", ignore_errors=True)
    _share_build_dir(build_dir, var_dir)
    api_port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env.pop("DATASYNC_AWS_ENDPOINT_URL", None)  # always the embedded emulator
    env.pop("DATASYNC_ENV_FILE", None)
    env.update(
        {
            "DATASYNC_VAR_DIR": str(var_dir),
            "DATASYNC_EMULATOR_PORT": str(emulator_port),
            "DATASYNC_EMULATOR_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
            **(extra_env or {}),
        }
    )
    log_path = var_dir / "datasync-up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the checkout's own CLI
            [str(datasync), "up"],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    stack = Stack(
        api_url=f"http://127.0.0.1:{api_port}",
        api_key=api_key_from(env),
        env_file=var_dir / "local" / "datasync.env",
        process=process,
        log_path=log_path,
    )
    try:
        _wait_until_ready(stack, say)
    except BaseException:
        stack.stop()
        raise
    return stack


def _share_build_dir(shared: Path, var_dir: Path) -> None:
    """Stacks share one Lambda zip cache (`datasync up` builds into <var>/build; zips are
    content-addressed), so a zip is built once, not once per stack."""
    var_dir.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    link = var_dir / "build"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(shared.resolve(), target_is_directory=True)


def attach_stack(env_file: Path, api_url: str) -> Stack:
    if not env_file.is_file():
        raise StackError(
            f"{env_file} not found: start the stack (`make run`) or pass the env file it wrote"
        )
    stack = Stack(api_url=api_url.rstrip("/"), api_key=api_key_from(os.environ), env_file=env_file)
    stack.env = read_env_file(env_file)
    if not _ready(stack.api_url):
        raise StackError(f"the API at {stack.api_url} is not ready (GET /readyz); is it running?")
    return stack


def api_key_from(env: dict[str, str]) -> str:
    keys = [k.strip() for k in env.get("DATASYNC_API_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else "local-dev-key"


def _ready(api_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(api_url + "/readyz", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _wait_until_ready(stack: Stack, say) -> None:
    assert stack.process is not None
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    started = time.monotonic()
    last_note = 0.0
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise StackError(
                f"`datasync up` exited with code {stack.process.returncode} before the stack was "
                f"ready; see {stack.log_path}:\n{_tail(stack.log_path)}"
            )
        if stack.env_file.is_file() and _ready(stack.api_url):
            stack.env = read_env_file(stack.env_file)
            return
        if time.monotonic() - last_note > 15:
            last_note = time.monotonic()
            waited = time.monotonic() - started
            say(f"waiting for the stack ({waited:.0f}s): {_last_line(stack.log_path)}")
        time.sleep(1)
    raise StackError(
        f"the stack was not ready after {READY_TIMEOUT_SECONDS}s; see {stack.log_path}"
    )


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _last_line(path: Path | None) -> str:
    tail = _tail(path, 1)
    return tail[:120]
