"""The local stack's files and ports: where `datasync up` puts them, how they are written and read.

Standard library only, so that everything that looks at a local stack reads it through this one
module: the dev stack (it writes them), the operator CLI (`datasync logs`, `trace`), the
benchmark (a venv of its own), the soak, the tests, deploy/kind, and MiniStack's interpreter
(the emulator's entry point writes the batch-limit line that `datasync up` and the benchmark
read back)::

    <var dir>/                 DATASYNC_VAR_DIR (default: the checkout's var/)
      local/datasync.env       the apps' settings, from the Terraform outputs (KEY=VALUE lines)
      local/processes.json     what the current run started: name, pid (= process group), start
      local/logs/<name>.log    one log per component (ministack.log: the emulator's)
      local/emulator/          the emulator's saved state; local/terraform/: Terraform's copy
      stores/                  the SQLite stores; build/: the Lambda zips
      terraform/               provider cache and CLI configuration (shared by every apply)
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# A checkout's root: the default var dir lives in it (`make run` and the CLI run from there).
CHECKOUT = Path(__file__).absolute().parents[1]

VAR_DIR_SETTING = "DATASYNC_VAR_DIR"
API_PORT_SETTING = "API_PORT"
EMULATOR_PORT_SETTING = "DATASYNC_EMULATOR_PORT"
EMULATOR_HOST_SETTING = "DATASYNC_EMULATOR_HOST"
DEFAULT_API_PORT = 8080
DEFAULT_EMULATOR_PORT = 4566
LOOPBACK = "127.0.0.1"
# The local stack's API key when DATASYNC_API_KEYS is unset (DATASYNC_ENV=local only).
LOCAL_API_KEY = "local-dev-key"


@dataclass(frozen=True)
class Layout:
    """One local stack: its var dir, and the ports its API and emulator listen on."""

    var_dir: Path
    api_port: int = DEFAULT_API_PORT
    emulator_port: int = DEFAULT_EMULATOR_PORT
    emulator_host: str = LOOPBACK  # what the emulator binds (0.0.0.0 for a kind cluster)

    @classmethod
    def on_free_ports(cls, var_dir: Path) -> Layout:
        """A stack of its own beside any other: ports nothing listens on now."""
        return cls(var_dir, api_port=free_port(), emulator_port=free_port())

    @classmethod
    def of_env_file(cls, env_file: Path, api_port: int = DEFAULT_API_PORT) -> Layout:
        """The layout an env file written by `datasync up` sits in (its logs are beside it)."""
        return cls(env_file.parent.parent, api_port=api_port)

    def environment(self) -> dict[str, str]:
        """The settings that make `datasync up` use this layout (devstack/settings.py reads
        them back)."""
        return {
            VAR_DIR_SETTING: str(self.var_dir),
            API_PORT_SETTING: str(self.api_port),
            EMULATOR_PORT_SETTING: str(self.emulator_port),
            EMULATOR_HOST_SETTING: self.emulator_host,
        }

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://{LOOPBACK}:{self.emulator_port}"

    @property
    def local_dir(self) -> Path:
        return self.var_dir / "local"

    @property
    def logs_dir(self) -> Path:
        return self.local_dir / "logs"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def emulator_log(self) -> Path:
        return self.log("ministack")

    @property
    def env_file(self) -> Path:
        return self.local_dir / "datasync.env"

    @property
    def process_file(self) -> Path:
        return self.local_dir / "processes.json"

    @property
    def emulator_state_dir(self) -> Path:
        return self.local_dir / "emulator"

    @property
    def terraform_dir(self) -> Path:
        return self.local_dir / "terraform"

    @property
    def terraform_config_dir(self) -> Path:
        return self.var_dir / "terraform"

    @property
    def store_dir(self) -> Path:
        return self.var_dir / "stores"

    @property
    def build_dir(self) -> Path:
        return self.var_dir / "build"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# -- datasync.env: the apps' settings ----------------------------------------------------------
ENV_FILE_HEADER = "# Written by `datasync up` from the Terraform outputs; read by the CLI."
# Every destination has three queues; their URLs are settings named after the destination
# (datasync/settings.py reads them), so adding a destination to the contract is enough.
QUEUE_KINDS = {"queue": "QUEUE_URL", "dlq": "DLQ_URL", "buffer_queue": "BUFFER_QUEUE_URL"}
_DESTINATION_QUEUE = re.compile(r"DATASYNC_([A-Z0-9]+)_QUEUE_URL")
INTAKE = "INTAKE"  # DATASYNC_INTAKE_QUEUE_URL is the intake's, not a destination's


def queue_setting_name(destination: str, kind: str = "queue") -> str:
    """The environment variable of one destination queue's URL, e.g. DATASYNC_CRM_DLQ_URL."""
    return f"DATASYNC_{destination.upper()}_{QUEUE_KINDS[kind]}"


def destinations_in(env: Mapping[str, str]) -> list[str]:
    """The destinations an env file has queues for, sorted."""
    found = (_DESTINATION_QUEUE.fullmatch(key) for key in env)
    return sorted(m[1].lower() for m in found if m and m[1] != INTAKE)


def write_env_file(path: Path, values: Mapping[str, str]) -> Path:
    """KEY=VALUE lines, sorted, as written (values are URLs, names and paths: no quoting)."""
    lines = [f"{key}={value}" for key, value in sorted(values.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ENV_FILE_HEADER + "\n" + "\n".join(lines) + "\n")
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """What write_env_file wrote; also a hand-edited copy (``export KEY=...``, quoted values)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# -- processes.json: what the current run started -----------------------------------------------
@dataclass(frozen=True)
class Started:
    """One child of `datasync up` as processes.json remembers it."""

    name: str
    pid: int  # also its process group: every child leads a session of its own
    start_time: int | None  # clock ticks since boot (/proc), to tell a reused pid apart


def write_process_file(path: Path, started: Iterable[Started]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"processes": [asdict(entry) for entry in started]}, indent=1))
    tmp.replace(path)  # readers never see half a file


def read_process_file(path: Path) -> list[Started]:
    """The children a run recorded; none when there is no (readable) file.

    Checkouts before 2026-12 wrote ``{"process_groups": [pgid, ...]}``; the benchmark still
    measures such checkouts (BENCH_REPO), so that format is read too, without names.
    """
    try:
        recorded = json.loads(path.read_text())
        if isinstance(recorded.get("process_groups"), list):
            return [Started(f"group-{g}", int(g), None) for g in recorded["process_groups"]]
        return [Started(**entry) for entry in recorded["processes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


# -- the API's readiness -----------------------------------------------------------------------
READY_PATH = "/readyz"


def api_ready(api_url: str, timeout: float = 2) -> bool:
    """Does the API answer 200 on /readyz? (Directly: a proxy in the environment is bypassed.)"""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(api_url.rstrip("/") + READY_PATH, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:  # refused, reset, timed out, or an HTTP error status (503: not ready)
        return False


def wait_until_ready(
    api_url: str,
    timeout: float,
    *,
    check: Callable[[], None] = lambda: None,
    pause: Callable[[float], object] = time.sleep,
    interval: float = 0.3,
) -> None:
    """Until the API is ready; TimeoutError after ``timeout`` seconds. ``check`` runs before
    each try and raises to give up early (the stack it waits for has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        if api_ready(api_url):
            return
        pause(interval)
    raise TimeoutError(f"the API at {api_url} was not ready ({READY_PATH}) after {timeout:.0f}s")


# -- the emulator's batch limit, as its log says -------------------------------------------------
MINISTACK_BATCH_LIMIT = 10  # what MiniStack's event source mappings hand a function as shipped
_PATCH_PREFIX = "datasync: "
# The wording of every checkout's entry point (older ones too: the benchmark measures them).
_PATCH_LINE = re.compile(r"take up to (\d+) messages per batch|left as shipped")


def lifted_line(limit: int) -> str:
    """The line the emulator's entry point logs when it lifted MiniStack's batch limit."""
    return f"{_PATCH_PREFIX}event source mappings take up to {limit} messages per batch " + (
        f"(MiniStack: {MINISTACK_BATCH_LIMIT})"
    )


def as_shipped_line(why: str) -> str:
    """The line it logs when it left MiniStack as shipped, and why."""
    return (
        f"{_PATCH_PREFIX}MiniStack left as shipped, at most {MINISTACK_BATCH_LIMIT} messages "
        f"per batch: {why}"
    )


def emulator_patch_line(log: Path) -> str | None:
    """The last start's line from the emulator's entry point, without its prefix; None when
    the log has none (an older checkout, or an emulator someone else runs)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if _PATCH_LINE.search(line)]
    return lines[-1].removeprefix(_PATCH_PREFIX) if lines else None


def emulator_batch_limit(log: Path) -> int | None:
    """The largest batch the emulator's event source mappings hand a function, as its log says.

    The last start's line from our entry point decides; MiniStack's own 10 when the log has no
    such line (an older checkout) or it says MiniStack was left as shipped; None without a log
    (an emulator someone else runs: LocalStack honours BatchSize).
    """
    if not log.is_file():
        return None
    match = _PATCH_LINE.search(emulator_patch_line(log) or "")
    return int(match[1]) if match and match[1] else MINISTACK_BATCH_LIMIT
