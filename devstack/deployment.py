"""Is what Terraform applied last time still in the emulator? A cheap check instead of a plan.

A restart with nothing changed skips Terraform when the applied record's fingerprint matches
and this check finds every resource the outputs name: the queues, the bus, its archive and
rules (with targets), each function (the intake's too) running the package's code, and its event
source mapping.
A `terraform plan` of the same stack costs 10-12 s on 2 idle cores (the 12 CloudWatch alarms,
read back incompletely by MiniStack, would even show as changes); this check costs well under
a second.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from datasync.core.aws import client
from datasync.core.queues import queue_depth
from devstack.settings import stack_settings

QUEUE_OUTPUTS = ("queue_urls", "dlq_urls", "buffer_queue_urls")


def package_code_sha256(package: Path) -> str:
    """Lambda's CodeSha256 of a zip (what Terraform's filebase64sha256 compares with)."""
    return base64.b64encode(hashlib.sha256(package.read_bytes()).digest()).decode()


def missing_resources(endpoint: str, outputs: dict[str, Any], package: Path) -> list[str]:
    """What the emulator lacks of the applied stack (empty: all there)."""
    try:
        return _missing(endpoint, outputs, package)
    except (BotoCoreError, ClientError, KeyError) as exc:
        return [f"(the check failed: {type(exc).__name__}: {exc})"]


def buffered_messages(endpoint: str, outputs: dict[str, Any]) -> int | None:
    """Messages in the intake and buffer queues, waiting or inside a Lambda batch; None if
    unknown.

    Asked while stopping: one short attempt per call (a hung emulator must not eat the stop's
    budget), and the first failure ends the asking.
    """
    sqs = client(
        "sqs", region=outputs["region"], endpoint_url=endpoint, connect_timeout=1,
        read_timeout=2, attempts=1, credentials=_emulator_credentials(),
    )  # fmt: skip
    try:
        urls = [outputs["intake_queue_url"], *outputs["buffer_queue_urls"].values()]
        return sum(sum(queue_depth(sqs, url).values()) for url in urls)
    except (BotoCoreError, ClientError, KeyError):
        return None


def _emulator_credentials() -> tuple[str, str] | None:
    """The emulator's fixed dummy credentials, unless the environment has some of its own (the
    shell `datasync up` runs in usually has none)."""
    if stack_settings().aws_access_key_id:
        return None
    return ("test", "test")


def _client(service: str, outputs: dict[str, Any], endpoint: str) -> Any:
    # A missing resource answers at once; a slow emulator makes the check fail, and then
    # Terraform runs instead (safe, only slower).
    return client(
        service, region=outputs["region"], endpoint_url=endpoint, read_timeout=5, attempts=1,
        credentials=_emulator_credentials(),
    )  # fmt: skip


def _missing(endpoint: str, outputs: dict[str, Any], package: Path) -> list[str]:
    sqs, events, lam = (_client(s, outputs, endpoint) for s in ("sqs", "events", "lambda"))
    urls = [url for kind in QUEUE_OUTPUTS for url in outputs[kind].values()]
    urls += [outputs["intake_queue_url"], outputs["intake_dlq_url"]]
    problems = [
        f"queue {url}"
        for url in urls
        if not _exists(lambda u=url: sqs.get_queue_attributes(QueueUrl=u))
    ]
    bus, archive = outputs["event_bus_name"], outputs["archive_name"]
    if not _exists(lambda: events.describe_event_bus(Name=bus)):
        problems.append(f"event bus {bus}")
    if not _exists(lambda: events.describe_archive(ArchiveName=archive)):
        problems.append(f"archive {archive}")
    for arn in [outputs["intake_rule_arn"], *outputs["rule_arns"].values()]:
        rule = arn.rsplit("/", 1)[1]
        try:
            targets = events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
        except ClientError:
            targets = []
        if not targets:
            problems.append(f"rule {rule} (or its target)")
    code = package_code_sha256(package)
    buffers = outputs["buffer_queue_arns"]
    for destination, name in outputs["lambda_function_names"].items():
        problems += _function_problems(lam, name, code, buffers[destination])
    intake = outputs["intake_function_name"]
    problems += _function_problems(lam, intake, code, outputs["intake_queue_arn"])
    return problems


def _function_problems(lam: Any, name: str, code: str, buffer_arn: str) -> list[str]:
    try:
        configuration = lam.get_function(FunctionName=name)["Configuration"]
    except ClientError:
        return [f"function {name}"]
    problems = []
    if configuration.get("CodeSha256") != code:
        problems.append(f"function {name} runs other code than the current package")
    mappings = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    if not any(m.get("EventSourceArn") == buffer_arn for m in mappings):
        problems.append(f"event source mapping of {name}")
    return problems


def _exists(call: Any) -> bool:
    try:
        call()
    except ClientError:
        return False
    return True
