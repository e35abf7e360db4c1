"""Running the project's Terraform from Python (python-terraform builds the command lines).

Each stack applies from its own working copy of ``terraform/`` (under ``var/`` for
`make run`, a temp dir for tests), so runs never share state. For an emulator, the copy
gets ``terraform/local/endpoint_override.tf`` with the emulator's URL filled in: Terraform
merges ``*_override.tf`` files into the provider block, so main.tf stays AWS-only.

The working copy keeps its ``terraform.tfstate`` between runs (the emulator keeps its state
too), and ``applied.json`` records what the last *successful* apply was given (a fingerprint of
the configuration and variables) and what it output, so a restart with nothing changed need not
run Terraform at all.

Terraform runs as a child of its own (python-terraform's ``cmd(synchronous=False)`` would pass
``-synchronous=false`` to the binary: 0.10.1 pops that option only after building the command
line), so a stop request interrupts a long apply with SIGINT, Terraform's graceful stop.

Provider installation: on a normal machine Terraform downloads hashicorp/aws from the
registry (cached in ``var/terraform/plugin-cache``). Offline machines point
``DATASYNC_TERRAFORM_MIRROR`` at a filesystem mirror (a directory laid out as
``registry.terraform.io/hashicorp/aws/<version>/<os_arch>/``) and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, Terraform

from devstack.paths import TERRAFORM_DIR
from devstack.processes import spawn, stop_process
from devstack.settings import stack_settings
from devstack.supervisor import StopLatch, StopRequested

OVERRIDE_SOURCE = TERRAFORM_DIR / "local" / "endpoint_override.tf"
OVERRIDE_PLACEHOLDER_URL = "http://127.0.0.1:4566"
MIRROR_SETTING = "DATASYNC_TERRAFORM_MIRROR"
# After SIGINT Terraform finishes the operations in progress and writes its state.
INTERRUPT_SECONDS = 15
STATE_FILES = ("terraform.tfstate", "terraform.tfstate.backup", "applied.json")


class TerraformError(RuntimeError):
    pass


def require_terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        raise TerraformError(
            "terraform is not on PATH: install Terraform >= 1.6 (https://developer.hashicorp.com/"
            "terraform/install) and run the command again"
        )
    return binary


def cli_environment() -> dict[str, str]:
    """Environment variables that tell Terraform where providers come from."""
    settings = stack_settings()
    config_dir = settings.layout.terraform_config_dir
    config_dir.mkdir(parents=True, exist_ok=True)
    mirror = settings.terraform_mirror
    if mirror:
        if not mirror.is_dir():
            raise TerraformError(f"{MIRROR_SETTING}={mirror} is not a directory")
        config = config_dir / "mirror.tfrc"
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{mirror.resolve()}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
        )
        return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}
    env = {"TF_IN_AUTOMATION": "1", "TF_PLUGIN_CACHE_DIR": str(config_dir / "plugin-cache")}
    Path(env["TF_PLUGIN_CACHE_DIR"]).mkdir(exist_ok=True)
    configured = settings.terraform_cli_config_file
    if configured and not configured.exists():
        env["TF_CLI_CONFIG_FILE"] = ""  # a dangling setting only produces warnings
    return env


def prepare_workdir(workdir: Path, endpoint_url: str | None) -> Path:
    """Copy the root module (and modules/) into ``workdir``; add the endpoint override.

    Terraform's state in ``workdir`` is kept: it describes what the emulator (which keeps its
    state too) already has, so the next apply only changes what changed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.tf"):
        stale.unlink()
    shutil.rmtree(workdir / "modules", ignore_errors=True)
    for source in TERRAFORM_DIR.glob("*.tf"):
        shutil.copy2(source, workdir / source.name)
    shutil.copytree(TERRAFORM_DIR / "modules", workdir / "modules")
    if endpoint_url:
        override = OVERRIDE_SOURCE.read_text().replace(
            OVERRIDE_PLACEHOLDER_URL, endpoint_url.rstrip("/")
        )
        (workdir / OVERRIDE_SOURCE.name).write_text(override)
    return workdir


def forget_state(workdir: Path) -> None:
    """Drop Terraform's state and the applied record (the emulator starts empty)."""
    for name in STATE_FILES:
        (workdir / name).unlink(missing_ok=True)


def inputs_fingerprint(workdir: Path, variables: dict[str, str]) -> str:
    """Everything an apply depends on: the configuration as copied, and the variables.

    The Lambda package's path carries a hash of its content, so new code is a new fingerprint.
    """
    digest = hashlib.sha256(json.dumps(variables, sort_keys=True).encode())
    for path in sorted(workdir.glob("*.tf")) + sorted((workdir / "modules").rglob("*.tf")):
        digest.update(str(path.relative_to(workdir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Applied:
    """What the last successful apply was given (fingerprint) and what it output."""

    fingerprint: str | None  # None: a later apply started and did not finish
    outputs: dict[str, Any]


class TerraformStack:
    """init / apply / output on one working copy; ``stream`` prints Terraform's progress."""

    def __init__(self, workdir: Path, *, stream: bool = True):
        require_terraform()
        self.workdir = workdir
        self.stream = stream
        self._tf = Terraform(working_dir=str(workdir))
        self._env = cli_environment()

    @property
    def record_path(self) -> Path:
        return self.workdir / "applied.json"

    def applied(self) -> Applied | None:
        try:
            data = json.loads(self.record_path.read_text())
            return Applied(data["fingerprint"], data["outputs"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _record(self, applied: Applied) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": applied.fingerprint, "outputs": applied.outputs}))
        tmp.replace(self.record_path)

    def _run(self, what: str, latch: StopLatch, **options: Any) -> None:
        """Run ``terraform <what>``; SIGINT it (then SIGKILL) if a stop is requested."""
        command = self._tf.generate_cmd_string(what, **options)
        log = None if self.stream else self.workdir / f"terraform-{what}.log"
        if log:
            log.write_bytes(b"")
        try:
            process = spawn(
                command, log_path=log, env={**os.environ, **self._env}, cwd=self.workdir,
                death_signal=signal.SIGINT,
            )  # fmt: skip
            code = self._wait(process, latch)
        finally:
            self._tf.temp_var_files.clean_up()  # -var-file written for the variables
        if code is None:
            raise StopRequested(latch.reason)
        if code != 0:
            details = f"\n{log.read_text()[-6000:]}" if log else ""
            raise TerraformError(
                f"terraform {what} failed (exit {code}) in {self.workdir}{details}"
            )

    @staticmethod
    def _wait(process: subprocess.Popen[bytes], latch: StopLatch) -> int | None:
        """The exit code, or None when a stop request interrupted Terraform."""
        while process.poll() is None:
            if latch.requested:
                stop_process(process, signal.SIGINT, INTERRUPT_SECONDS)
                return None
            latch.wait(0.5)
        return process.returncode

    def init(self, latch: StopLatch) -> None:
        try:
            self._run("init", latch, input=False, no_color=IsFlagged)
        except TerraformError as exc:
            if stack_settings().terraform_mirror:
                raise
            raise TerraformError(
                f"{exc}\nIf this machine cannot reach the Terraform registry, point "
                f"{MIRROR_SETTING} at a provider mirror (see README, 'Terraform providers')."
            ) from None

    def apply(self, variables: dict[str, str], latch: StopLatch) -> dict[str, Any]:
        """Apply, then record what it was given; an unfinished apply leaves no fingerprint."""
        previous = self.applied()
        if previous is not None:  # until this apply finishes, the record must not look current
            self._record(Applied(None, previous.outputs))
        self._run(
            "apply", latch, var=variables, parallelism=20, input=False, no_color=IsFlagged,
            auto_approve=IsFlagged,
        )  # fmt: skip
        outputs = self.outputs()
        self._record(Applied(inputs_fingerprint(self.workdir, variables), outputs))
        return outputs

    def outputs(self) -> dict[str, Any]:
        # Run here rather than through python-terraform's output(), which has no env parameter:
        # it would need this process's os.environ changed for the call.
        done = subprocess.run(  # noqa: S603 - the terraform binary, fixed arguments
            [require_terraform(), "output", "-json", "-no-color"], cwd=self.workdir,
            env={**os.environ, **self._env}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            raw = json.loads(done.stdout) if done.returncode == 0 else None
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            raise TerraformError(
                f"terraform output failed in {self.workdir}: {done.stderr[-2000:]}"
            )
        return {name: entry["value"] for name, entry in raw.items()}
