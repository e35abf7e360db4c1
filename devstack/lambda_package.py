"""Build the Lambda zip Terraform deploys: datasync/ + lambdas/ + pinned dependencies.

Two targets, because compiled wheels (pydantic-core) must match the interpreter that runs
the handler:
- ``aws``: manylinux wheels for the Lambda runtime (Python 3.12, x86_64 or arm64), fetched
  with pip's cross-platform options; this is what a real deployment uses.
- ``local``: wheels for the emulator's own interpreter (MiniStack runs handlers with it,
  whatever runtime the function declares).
boto3 is not bundled: Lambda's Python runtimes (and the emulator environment) provide it.
Builds are cached by a hash of their inputs, so `make run` rebuilds only after a change.
An ``aws`` zip is named ``lambda-aws-<architecture>-<hash>.zip``: Terraform refuses to deploy it
with a different ``lambda_architecture`` (the function would run it and fail to import
pydantic-core).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from devstack.paths import REQUIREMENTS_DIR, ROOT
from devstack.settings import stack_settings

Target = Literal["local", "aws"]
SOURCE_PACKAGES = ("datasync", "lambdas")
LOCK_FILE = REQUIREMENTS_DIR / "lambda.lock"
AWS_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Fixed timestamps make the zip byte-identical for identical inputs, so Terraform's
# source_code_hash only changes when the code does.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _source_files() -> list[Path]:
    files = []
    for package in SOURCE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix in (".py", ".json")
            ):
                files.append(path)
    return files


def _fingerprint(target: str, python_version: str, architecture: str) -> str:
    digest = hashlib.sha256(f"{target}|{python_version}|{architecture}".encode())
    digest.update(LOCK_FILE.read_bytes())
    for path in _source_files():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _pip_install(target: Target, into: Path, python_version: str, architecture: str) -> None:
    if target == "local":
        python = stack_settings().ministack_venv / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"the emulator environment is missing ({python}): run `make tools`")
        platform_args: list[str] = []
    else:
        python = Path(sys.executable)
        platform_args = [
            "--platform", AWS_PLATFORMS[architecture],
            "--implementation", "cp",
            "--python-version", python_version,
            "--only-binary=:all:",
        ]  # fmt: skip
    command = [
        str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--target", str(into), "--requirement", str(LOCK_FILE), *platform_args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - pip of a known interpreter, fixed arguments
    if result.returncode != 0:
        raise RuntimeError(
            f"pip could not install the Lambda dependencies:\n{result.stderr[-3000:]}"
        )


def _write_zip(path: Path, site: Path) -> None:
    entries: list[tuple[str, Path]] = [
        (str(p.relative_to(site)), p) for p in sorted(site.rglob("*")) if p.is_file()
    ]
    entries += [(str(p.relative_to(ROOT)), p) for p in _source_files()]
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, source in entries:
            if "__pycache__" in name or name.endswith(".pyc"):
                continue
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    tmp.replace(path)


# Older builds are removed only once they are a day old: a `make run` and a `make test` share
# var/build, and a zip one of them is deploying must not vanish under it.
STALE_AFTER_SECONDS = 24 * 3600


def _remove_stale(builds: Iterable[Path]) -> None:
    cutoff = time.time() - STALE_AFTER_SECONDS
    for build in builds:
        with contextlib.suppress(FileNotFoundError):
            if build.stat().st_mtime < cutoff:
                build.unlink()


def build_lambda_package(
    target: Target,
    out_dir: Path,
    *,
    python_version: str = "3.12",
    architecture: str = "x86_64",
) -> Path:
    """Build (or reuse) the zip for ``target``; returns its path."""
    if target == "local":
        # The emulator runs handlers with its own interpreter, whatever the function declares.
        python_version = architecture = "host"
        name = "lambda-local"
    else:
        if architecture not in AWS_PLATFORMS:
            choices = ", ".join(AWS_PLATFORMS)
            raise ValueError(f"unknown Lambda architecture {architecture!r}: use one of {choices}")
        name = f"lambda-aws-{architecture}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{_fingerprint(target, python_version, architecture)}.zip"
    if path.exists():
        return path
    _remove_stale(out_dir.glob(f"{name}-*.zip"))
    with tempfile.TemporaryDirectory(prefix="datasync-lambda-") as tmp:
        site = Path(tmp) / "site"
        _pip_install(target, site, python_version, architecture)
        shutil.rmtree(site / "bin", ignore_errors=True)
        _write_zip(path, site)
    return path
