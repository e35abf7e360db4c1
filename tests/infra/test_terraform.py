"""Terraform, checked offline: formatting, validation, and `terraform test` on a mock provider."""

from __future__ import annotations

import os
import subprocess

import pytest

from devstack.terraform import (
    TERRAFORM_DIR,
    cli_environment,
    prepare_workdir,
    require_terraform,
)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory):
    """A working copy of terraform/ (with tests/) after `terraform init -backend=false`."""
    require_terraform()
    workdir = prepare_workdir(tmp_path_factory.mktemp("tf"), endpoint_url=None)
    tests_dir = TERRAFORM_DIR / "tests"
    if tests_dir.is_dir():
        subprocess.run(["cp", "-r", str(tests_dir), str(workdir / "tests")], check=True)
    run(["terraform", "init", "-backend=false", "-input=false"], workdir)
    return workdir


def run(command, cwd):
    env = {**os.environ, **cli_environment()}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def test_terraform_fmt():
    require_terraform()
    run(["terraform", "fmt", "-check", "-recursive", "-diff"], TERRAFORM_DIR)


def test_terraform_validate(initialised):
    assert "The configuration is valid" in run(["terraform", "validate", "-no-color"], initialised)


def test_terraform_validate_with_the_local_endpoint_override(tmp_path, initialised):
    workdir = prepare_workdir(initialised, endpoint_url="http://127.0.0.1:4999")
    override = (workdir / "endpoint_override.tf").read_text()
    assert "http://127.0.0.1:4999" in override and "http://127.0.0.1:4566" not in override
    assert "The configuration is valid" in run(["terraform", "validate", "-no-color"], workdir)
    (workdir / "endpoint_override.tf").unlink()


def test_terraform_test_on_the_mock_provider(initialised):
    tests = sorted((initialised / "tests").glob("*.tftest.hcl"))
    assert tests, "terraform/tests/*.tftest.hcl are missing"
    output = run(["terraform", "test", "-no-color"], initialised)
    assert "0 failed" in output or "Success!" in output, output


def test_root_module_has_no_emulator_specific_settings():
    main = "\n".join(p.read_text() for p in TERRAFORM_DIR.glob("*.tf"))
    for local_only in ("skip_credentials_validation", "127.0.0.1", "localhost", "4566"):
        assert local_only not in main, (
            f"{local_only} belongs in terraform/local/endpoint_override.tf"
        )
