"""Running the project's Terraform from Python (python-terraform wraps the CLI binary).

Each stack applies from its own working copy of ``terraform/`` (under ``var/`` for
`make run`, a temp dir for tests), so runs never share state. For an emulator, the copy
gets ``terraform/local/endpoint_override.tf`` with the emulator's URL filled in: Terraform
merges ``*_override.tf`` files into the provider block, so main.tf stays AWS-only.

Provider installation: on a normal machine Terraform downloads hashicorp/aws from the
registry (cached in ``var/terraform/plugin-cache``). Offline machines point
``DATASYNC_TERRAFORM_MIRROR`` at a filesystem mirror (a directory laid out as
``registry.terraform.io/hashicorp/aws/<version>/<os_arch>/``) and nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from python_terraform import Terraform

from apps.cli.paths import TERRAFORM_DIR, var_dir

OVERRIDE_SOURCE = TERRAFORM_DIR / "local" / "endpoint_override.tf"
OVERRIDE_PLACEHOLDER_URL = "http://127.0.0.1:4566"
MIRROR_SETTING = "DATASYNC_TERRAFORM_MIRROR"


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
    config_dir = var_dir() / "terraform"
    config_dir.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get(MIRROR_SETTING)
    if mirror:
        if not Path(mirror).is_dir():
            raise TerraformError(f"{MIRROR_SETTING}={mirror} is not a directory")
        config = config_dir / "mirror.tfrc"
        config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{Path(mirror).resolve()}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
        )
        return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}
    env = {"TF_IN_AUTOMATION": "1", "TF_PLUGIN_CACHE_DIR": str(config_dir / "plugin-cache")}
    Path(env["TF_PLUGIN_CACHE_DIR"]).mkdir(exist_ok=True)
    configured = os.environ.get("TF_CLI_CONFIG_FILE")
    if configured and not Path(configured).exists():
        env["TF_CLI_CONFIG_FILE"] = ""  # a dangling setting only produces warnings
    return env


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    # python-terraform passes os.environ to the binary and has no env parameter.
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare_workdir(workdir: Path, endpoint_url: str | None) -> Path:
    """Copy the root module (and modules/) into ``workdir``; add the endpoint override."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in list(workdir.glob("*.tf")) + list(workdir.glob("terraform.tfstate*")):
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


class TerraformStack:
    """init / apply / output on one working copy; ``stream`` prints Terraform's progress."""

    def __init__(self, workdir: Path, *, stream: bool = True):
        require_terraform()
        self.workdir = workdir
        self.stream = stream
        self._tf = Terraform(working_dir=str(workdir))
        self._env = cli_environment()

    def _run(self, what: str, call: Any, **kwargs: Any) -> None:
        kwargs["capture_output"] = not self.stream
        with _environment(self._env):
            code, out, err = call(**kwargs)
        if code != 0:
            details = f"\n{(err or '')[-4000:]}{(out or '')[-2000:]}" if not self.stream else ""
            raise TerraformError(
                f"terraform {what} failed (exit {code}) in {self.workdir}{details}"
            )

    def init(self) -> None:
        try:
            self._run("init", self._tf.init, reconfigure=False, upgrade=False)
        except TerraformError as exc:
            if os.environ.get(MIRROR_SETTING):
                raise
            raise TerraformError(
                f"{exc}\nIf this machine cannot reach the Terraform registry, point "
                f"{MIRROR_SETTING} at a provider mirror (see README, 'Terraform providers')."
            ) from None

    def apply(self, variables: dict[str, str]) -> dict[str, Any]:
        self._run("apply", self._tf.apply, skip_plan=True, var=variables, parallelism=20)
        return self.outputs()

    def outputs(self) -> dict[str, Any]:
        with _environment(self._env):
            raw = self._tf.output()
        if raw is None:
            raise TerraformError(f"terraform output failed in {self.workdir}")
        return {name: entry["value"] for name, entry in raw.items()}
