"""The Lambda zip Terraform deploys: importable, self-contained, reproducible."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile

import pytest

from apps.cli.lambda_package import build_lambda_package
from apps.cli.paths import MINISTACK_VENV


def names(path):
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_local_package_imports_with_the_emulators_interpreter(tmp_path):
    if not (MINISTACK_VENV / "bin" / "python").exists():
        pytest.fail("the emulator environment is missing: run `make tools`")
    package = build_lambda_package("local", tmp_path / "build")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(unpacked)
    result = subprocess.run(
        [str(MINISTACK_VENV / "bin" / "python"), "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import lambdas.handler, pydantic_core, email_validator; print('ok')",
         str(unpacked)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "ok", result.stderr


def test_aws_package_targets_the_lambda_runtime_and_leaves_boto3_to_it(tmp_path):
    package = build_lambda_package(
        "aws", tmp_path / "build", python_version="3.12", architecture="arm64"
    )
    contents = names(package)
    assert "lambdas/handler.py" in contents and "datasync/contract/events.py" in contents
    assert any(
        n.startswith("pydantic_core/_pydantic_core.cpython-312-aarch64-linux-gnu") for n in contents
    )
    assert not any(n.startswith(("boto3/", "botocore/", "flask/", "apps/")) for n in contents)
    assert not any("__pycache__" in n for n in contents)


def test_builds_are_reproducible_and_cached(tmp_path):
    first = build_lambda_package("aws", tmp_path / "a")
    second = build_lambda_package("aws", tmp_path / "b")
    assert first.name == second.name
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    mtime = first.stat().st_mtime_ns
    assert build_lambda_package("aws", tmp_path / "a").stat().st_mtime_ns == mtime  # reused
