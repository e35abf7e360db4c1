"""The Lambda zip Terraform deploys: importable, self-contained, reproducible."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import zipfile

import pytest

from devstack.lambda_package import build_lambda_package
from devstack.settings import stack_settings

# ELF e_machine values (System V ABI): what a compiled extension really runs on.
ELF_MACHINES = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64


def names(path):
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def elf_machines(path) -> dict[str, int]:
    """e_machine of every shared object in the zip, read from its ELF header."""
    machines = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if ".so" not in name.rsplit("/", 1)[-1]:
                continue
            header = archive.read(name)[:20]
            assert header[:4] == b"\x7fELF", f"{name} is not an ELF file"
            assert header[4] == 2 and header[5] == 1, f"{name} is not 64-bit little-endian ELF"
            machines[name] = struct.unpack_from("<H", header, 18)[0]
    return machines


def test_local_package_imports_with_the_emulators_interpreter(tmp_path):
    if not (stack_settings().ministack_venv / "bin" / "python").exists():
        pytest.fail("the emulator environment is missing: run `make tools`")
    package = build_lambda_package("local", tmp_path / "build")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(unpacked)
    result = subprocess.run(
        [str(stack_settings().ministack_venv / "bin" / "python"), "-I", "-c",
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


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_aws_package_is_compiled_for_its_architecture_and_says_so(tmp_path, architecture):
    """The name carries the architecture (Terraform checks it) and so does every .so inside."""
    package = build_lambda_package("aws", tmp_path / "build", architecture=architecture)
    assert package.name.startswith(f"lambda-aws-{architecture}-")
    machines = elf_machines(package)
    assert any(n.startswith("pydantic_core/_pydantic_core") for n in machines), machines
    wrong = {n: m for n, m in machines.items() if m != ELF_MACHINES[architecture]}
    assert not wrong, f"compiled for another machine than {architecture}: {wrong}"


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="x86_64, arm64"):
        build_lambda_package("aws", tmp_path / "build", architecture="aarch64")


def test_builds_are_reproducible_and_cached(tmp_path):
    first = build_lambda_package("aws", tmp_path / "a")
    second = build_lambda_package("aws", tmp_path / "b")
    assert first.name == second.name
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    mtime = first.stat().st_mtime_ns
    assert build_lambda_package("aws", tmp_path / "a").stat().st_mtime_ns == mtime  # reused
