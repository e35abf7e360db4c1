"""The local stack's files and ports: where `datasync up` puts them, how they are written and read.

Standard library only, so that everything that looks at a local stack reads it through this one
module: the dev stack (it writes them), the operator CLI (`datasync logs`, `trace`), the
benchmark (a venv of its own), the soak, the tests and deploy/kind::

    <var dir>/                 DATASYNC_VAR_DIR (default: the checkout's var/)
      local/datasync.env       the apps' settings, from the Terraform outputs (KEY=VALUE lines)
      local/processes.json     what the current run started: name, pid (= process group), start
      local/logs/<name>.log    one log per component (ministack.log: the emulator's)
      local/emulator/          the emulator's saved state; local/terraform/: Terraform's copy
      stores/                  the SQLite stores; build/: the Lambda zips
      terraform/               provider cache and CLI configuration (shared by every apply)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# A checkout's root: the default var dir lives in it (`make run` and the CLI run from there).
CHECKOUT = Path(__file__).resolve().parents[1]

VAR_DIR_SETTING = "DATASYNC_VAR_DIR"
API_PORT_SETTING = "API_PORT"
EMULATOR_PORT_SETTING = "DATASYNC_EMULATOR_PORT"
EMULATOR_HOST_SETTING = "DATASYNC_EMULATOR_HOST"
DEFAULT_API_PORT = 8080
DEFAULT_EMULATOR_PORT = 4566
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Layout:
    """One local stack: its var dir, and the ports its API and emulator listen on."""

    var_dir: Path
    api_port: int = DEFAULT_API_PORT
    emulator_port: int = DEFAULT_EMULATOR_PORT
    emulator_host: str = LOOPBACK  # what the emulator binds (0.0.0.0 for a kind cluster)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Layout:
        """The layout the environment chooses (what `datasync up` and the CLI use)."""
        env = os.environ if environ is None else environ
        return cls(
            var_dir=Path(env.get(VAR_DIR_SETTING) or CHECKOUT / "var"),
            api_port=_port(env, API_PORT_SETTING, DEFAULT_API_PORT),
            emulator_port=_port(env, EMULATOR_PORT_SETTING, DEFAULT_EMULATOR_PORT),
            emulator_host=env.get(EMULATOR_HOST_SETTING) or LOOPBACK,
        )

    def environment(self) -> dict[str, str]:
        """The settings that make `datasync up` use this layout (from_environment's inverse)."""
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


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)
