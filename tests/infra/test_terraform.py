"""Terraform, checked offline: formatting, validation, and `terraform test` on a mock provider."""

from __future__ import annotations

import gzip
import json
import os
import shutil
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


# State that `terraform apply` of the root as it was before modules/queue-function wrote (on
# MiniStack, with the alarms on and the variables below): an existing deployment to upgrade.
FIXTURES = TERRAFORM_DIR / "tests" / "fixtures"
DEPLOYED_STATE = FIXTURES / "deployed-before-queue-function.state.json.gz"
DEPLOYED_WITH = {
    "lambda_package_path": "tests/fixtures/lambda-stub.zip",
    "analytics_hash_key": "0123456789abcdef-test-key",
    "create_alarms": "true",
}
# What that upgrade moves: the intake's target, log group, role, role policy, function and mapping
# (6), and each destination's rule, buffer queue and DLQ besides (9 x 3).
MOVED_BY_THE_UPGRADE = 33
# Resources a change removes on purpose, with why; anything else planned for destruction fails.
INTENDED_REMOVALS: dict[str, str] = {}


def test_an_existing_deployment_upgrades_in_place(tmp_path):
    """Plans the root against that state without refreshing it (offline: the endpoint is closed)."""
    require_terraform()
    workdir = prepare_workdir(tmp_path / "upgrade", endpoint_url="http://127.0.0.1:9")
    shutil.copytree(FIXTURES, workdir / "tests" / "fixtures")
    (workdir / "terraform.tfstate").write_bytes(gzip.decompress(DEPLOYED_STATE.read_bytes()))
    run(["terraform", "init", "-input=false", "-no-color"], workdir)
    variables = [arg for key, value in DEPLOYED_WITH.items() for arg in ("-var", f"{key}={value}")]
    run(["terraform", "plan", "-refresh=false", "-input=false", "-no-color", "-out=upgrade.tfplan",
         *variables], workdir)  # fmt: skip
    plan = json.loads(run(["terraform", "show", "-json", "upgrade.tfplan"], workdir))
    changes = plan["resource_changes"]
    destroyed = [
        f"{c['address']} ({'/'.join(c['change']['actions'])})"
        for c in changes
        if "delete" in c["change"]["actions"] and c["address"] not in INTENDED_REMOVALS
    ]
    assert not destroyed, (
        "an existing deployment would lose these (a queue destroyed loses its messages): add a "
        "moved block (terraform/moved.tf, or the module's moved.tf) for a new address, or list "
        "a resource meant to go in INTENDED_REMOVALS:\n" + "\n".join(destroyed)
    )
    moved = [c for c in changes if c.get("previous_address")]
    assert len(moved) == MOVED_BY_THE_UPGRADE, [c["address"] for c in moved]
    assert all(c["change"]["actions"] == ["no-op"] for c in moved), "a moved resource changes"


def test_root_module_has_no_emulator_specific_settings():
    main = "\n".join(p.read_text() for p in TERRAFORM_DIR.glob("*.tf"))
    for local_only in ("skip_credentials_validation", "127.0.0.1", "localhost", "4566"):
        assert local_only not in main, (
            f"{local_only} belongs in terraform/local/endpoint_override.tf"
        )
