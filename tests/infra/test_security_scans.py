"""Security scanners, run by `make test`: checkov on terraform/, bandit on the runtime code and the
dev stack, and an audit of the pinned dependencies that ship. Each passes with zero unexplained findings: a waiver
sits beside what it waives, with its reason, and each scan first proves that it really looked.

The scanners run from their own venvs (mk/security.mk, mk/k8s.mk), never from .venv.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from devstack.paths import ROOT, TERRAFORM_DIR

SECURITY_TOOLS = Path(os.environ.get("DATASYNC_SECURITY_TOOLS", ROOT / ".tools" / "security"))
K8S_TOOLS = Path(os.environ.get("DATASYNC_K8S_TOOLS", ROOT / ".tools" / "k8s-checks"))
FIXTURES = ROOT / "tests" / "fixtures" / "security"

# The checkov checks terraform/ waives, by resource type. Each waiver is a
# `#checkov:skip=<id>:<reason>` comment in the resource; adding one means adding it here too.
CHECKOV_WAIVERS = {
    ("CKV_AWS_50", "aws_lambda_function"),  # X-Ray: correlation ids instead, no "*" resource
    ("CKV_AWS_115", "aws_lambda_function"),  # reserved concurrency: capped on the mapping
    ("CKV_AWS_116", "aws_lambda_function"),  # function DLQ: async only; the queues redrive
    ("CKV_AWS_117", "aws_lambda_function"),  # VPC: calls AWS APIs only
    ("CKV_AWS_173", "aws_lambda_function"),  # env encryption: AWS-managed key
    ("CKV_AWS_272", "aws_lambda_function"),  # code signing: no Signer profile yet
    ("CKV_AWS_158", "aws_cloudwatch_log_group"),  # log group CMK: no personal data in logs
    ("CKV_AWS_338", "aws_cloudwatch_log_group"),  # 1-year retention: operational logs
    ("CKV_AWS_28", "aws_dynamodb_table"),  # point-in-time recovery: sessions are disposable
    ("CKV_AWS_119", "aws_dynamodb_table"),  # sessions table CMK: no secret in its items
}

BANDIT_TARGETS = ("apps", "datasync", "devstack", "lambdas")

# The lock files whose packages ship in an image or a Lambda zip, or run the tests.
SHIPPED_LOCKS = ("api.lock", "consumers.lock", "lambda.lock", "dev.lock")
# Advisories accepted on purpose, by id: only when no fixed release exists, with why the exposure
# is acceptable. Each entry is passed to pip-audit as --ignore-vuln.
AUDIT_IGNORES: dict[str, str] = {}
# Set where the vulnerability data is reachable (a CI runner on the public internet): there an
# audit that cannot run fails instead of being skipped.
REQUIRE_AUDIT_SETTING = "DATASYNC_REQUIRE_DEPENDENCY_AUDIT"


def tool(venv: Path, name: str) -> str:
    path = venv / "bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `make security-tools chart-tools` (mk/security.mk, mk/k8s.mk)"
        )
    return str(path)


def run_json(command: list[str]) -> dict | list:
    """Run a scanner that reports JSON on stdout (its exit status only says it found something)."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"{Path(command[0]).name} gave no JSON report (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )


# --- checkov on terraform/ ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov() -> dict:
    report = run_json(
        [tool(K8S_TOOLS, "checkov"), "--skip-download", "--framework", "terraform",
         "-d", str(TERRAFORM_DIR), "-o", "json", "--compact"]
    )  # fmt: skip
    # One framework gives one report; checkov answers a list when it ran several.
    return report[0] if isinstance(report, list) else report


def resource_type(check: dict) -> str:
    # module.destination["crm"].aws_lambda_function.transform -> aws_lambda_function
    return check["resource"].split(".")[-2]


def test_checkov_finds_no_failed_terraform_checks(checkov):
    summary = checkov["summary"]
    assert summary["parsing_errors"] == 0, checkov["results"].get("parsing_errors")
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:"
        f"{c['file_line_range'][0]}) {c.get('guideline') or ''}"
        for c in checkov["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks (fix, or waive beside the resource):\n" + "\n".join(
        failed
    )


def test_checkov_really_checked_encryption_and_iam(checkov):
    """Proof that it looked: SSE on every queue, no wildcard action in any IAM policy."""
    passed = defaultdict(set)
    for check in checkov["results"]["passed_checks"]:
        passed[check["check_id"]].add(check["resource"])
    queues = {r for r in passed["CKV_AWS_27"] if resource_type({"resource": r}) == "aws_sqs_queue"}
    # 3 per destination, and the intake's queue and DLQ.
    assert len(queues) == 11, f"SQS encryption checked on {sorted(queues)}"
    assert {"module.intake.aws_sqs_queue.this", "module.intake.aws_sqs_queue.dlq"} <= queues
    # No "*" action in any IAM policy: the 3 function roles, the intake's, the API's, the 3
    # consumers' and the status page's read-only one.
    policies = passed["CKV_AWS_63"]
    assert len(policies) == 9, f"IAM wildcard check ran on {sorted(policies)}"
    assert "module.intake.aws_iam_role_policy.this" in policies
    assert "aws_iam_policy.dashboard" in policies
    # The alarm topic is encrypted, with a customer-managed key that rotates. (checkov names a
    # counted resource with or without its "[0]", from one run to the next.)
    topics, keys = ({r.removesuffix("[0]") for r in passed[c]} for c in ("CKV_AWS_26", "CKV_AWS_7"))
    assert topics == {"module.monitoring.aws_sns_topic.alarms"}, topics
    assert keys == {"module.monitoring.aws_kms_key.alarms"}, keys


def test_checkov_waivers_are_the_documented_ones_with_reasons(checkov):
    skipped = checkov["results"].get("skipped_checks", [])
    waivers = {(c["check_id"], resource_type(c)) for c in skipped}
    assert waivers == CHECKOV_WAIVERS, (
        f"new waivers: {sorted(waivers - CHECKOV_WAIVERS)}; "
        f"no longer needed: {sorted(CHECKOV_WAIVERS - waivers)}"
    )
    unexplained = [
        f"{c['check_id']} {c['resource']}"
        for c in skipped
        if len(c["check_result"].get("suppress_comment", "").split()) < 5
    ]
    assert not unexplained, f"waivers without a reason: {unexplained}"


# --- bandit on apps/, datasync/, lambdas/ ------------------------------------------------------

NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*)")


def bandit(*targets: str) -> dict:
    return run_json(
        [tool(SECURITY_TOOLS, "bandit"), "-c", "pyproject.toml", "-q", "-f", "json", "-r", *targets]
    )


def ruff_file_ignores() -> dict[str, set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {p: set(c) for p, c in config["tool"]["ruff"]["lint"]["per-file-ignores"].items()}


def waived_by_ruff(finding: dict, file_ignores: dict[str, set[str]]) -> bool:
    """Ruff's flake8-bandit rules share bandit's numbers (B603 = S603): its waiver counts."""
    code = "S" + finding["test_id"][1:]
    path = finding["filename"]
    if any(fnmatch.fnmatch(path, p) and code in codes for p, codes in file_ignores.items()):
        return True
    lines = (ROOT / path).read_text().splitlines()
    for number in finding["line_range"]:
        noqa = NOQA.search(lines[number - 1])
        if noqa and code in re.split(r"[,\s]+", noqa["codes"]):
            return True
    return False


def describe(finding: dict) -> str:
    return (
        f"{finding['test_id']} {finding['issue_severity']} {finding['filename']}:"
        f"{finding['line_number']} {finding['issue_text']}"
    )


def test_bandit_finds_nothing_high_and_nothing_unwaived():
    report = bandit(*BANDIT_TARGETS)
    assert not report["errors"], report["errors"]
    scanned = {Path(name).as_posix() for name in report["metrics"] if name != "_totals"}
    assert {"lambdas/handler.py", "apps/api/app.py", "datasync/core/bus.py"} <= scanned
    findings = report["results"]
    high = [describe(f) for f in findings if f["issue_severity"] == "HIGH"]
    assert not high, "bandit HIGH findings (fix them):\n" + "\n".join(high)
    ignores = ruff_file_ignores()
    unwaived = [describe(f) for f in findings if not waived_by_ruff(f, ignores)]
    assert not unwaived, (
        "bandit findings without a waiver (fix, or add `# nosec Bxxx - reason`):\n"
        + "\n".join(unwaived)
    )


def test_bandit_as_configured_still_reports_what_it_should():
    """The canary: pyproject.toml's bandit settings must not silence real findings."""
    findings = bandit(str(FIXTURES / "insecure_sample.py"))["results"]
    found = {(f["test_id"], f["issue_severity"]) for f in findings}
    assert {("B602", "HIGH"), ("B603", "LOW")} <= found, found
    assert not any(
        waived_by_ruff(f, ruff_file_ignores()) for f in findings if f["test_id"] == "B603"
    )


# --- dependency audit of the shipped lock files --------------------------------------------------


def pip_audit(*requirement_files: Path) -> dict:
    command = [
        tool(SECURITY_TOOLS, "pip-audit"),
        "--vulnerability-service", "pypi",
        # The locks pin every package: audit them as written, without resolving or installing.
        "--no-deps", "--disable-pip",
        "--format", "json", "--progress-spinner", "off",
    ]  # fmt: skip
    for vulnerability in AUDIT_IGNORES:
        command += ["--ignore-vuln", vulnerability]
    for path in requirement_files:
        command += ["--requirement", str(path)]
    return run_json(command)


def no_vulnerability_data(reason: str) -> None:
    message = (
        f"dependency audit NOT done: no vulnerability data reachable from here ({reason}). "
        f"Set {REQUIRE_AUDIT_SETTING}=1 where pip-audit can reach PyPI's advisory data."
    )
    if os.environ.get(REQUIRE_AUDIT_SETTING) == "1":
        pytest.fail(message)
    pytest.skip(message)


def test_dependency_audit_of_the_shipped_locks():
    canary = pip_audit(FIXTURES / "known-vulnerable.txt")["dependencies"]
    known = {v["id"] for d in canary for v in d.get("vulns", [])} | {
        alias for d in canary for v in d.get("vulns", []) for alias in v.get("aliases", [])
    }
    if "PYSEC-2017-94" not in known:
        skipped = "; ".join(d.get("skip_reason", "no advisories returned") for d in canary)
        no_vulnerability_data(
            f"the canary pycrypto==2.6.1 showed none of its advisories: {skipped}"
        )

    locks = [ROOT / "requirements" / name for name in SHIPPED_LOCKS]
    dependencies = pip_audit(*locks)["dependencies"]
    assert len(dependencies) > 50, dependencies  # every pin of the four locks, once
    unaudited = [f"{d['name']}: {d['skip_reason']}" for d in dependencies if "skip_reason" in d]
    assert not unaudited, "pins the audit could not check:\n" + "\n".join(unaudited)
    vulnerable = [
        f"{d['name']}=={d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'none'})"
        for d in dependencies
        for v in d.get("vulns", [])
    ]
    assert not vulnerable, (
        "known vulnerabilities in the shipped locks (upgrade the pin, or if no fix exists add the "
        "id with its reason to AUDIT_IGNORES):\n" + "\n".join(vulnerable)
    )
