"""The one mapping from a deployment's names, URLs and roles to the chart's values.

Two scripts fill it in: deploy/values_from_outputs.py from `terraform output -json` (staging and
prod on EKS), deploy/kind/kind_values.py from the local emulator's env file (kind). Either way
the chart gets the same keys (charts/datasync/values.yaml says what each one does):

    event bus, region, sessions table   -> config.eventBusName, awsRegion, dashboardSessionsTable
    intake queue and DLQ                -> config.intakeQueueUrl, intakeDlqUrl (the status page)
    per destination: queue, DLQ, buffer -> consumers.<d>.queueUrl, dlqUrl, bufferQueueUrl
    workload identity (EKS only)        -> the ServiceAccounts' names and, with IRSA, their roles

``consumers`` is written as a map keyed by destination, so that a hand-written values file
layered after it changes one destination's scaling without repeating (or losing) its URLs.
Standard library only; the output is JSON, which Helm reads as YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

QUEUE_VALUES = {"queue": "queueUrl", "dlq": "dlqUrl", "buffer_queue": "bufferQueueUrl"}


@dataclass(frozen=True)
class Identity:
    """The workload roles Terraform made for a cluster, and the ServiceAccounts they name."""

    mode: Literal["irsa", "pod_identity"]
    namespace: str
    api_service_account: str
    consumer_service_accounts: dict[str, str]
    api_role_arn: str | None = None
    consumer_role_arns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """What the chart needs to know about one deployment of the AWS side."""

    event_bus_name: str
    region: str
    # destination -> {"queue": url, "dlq": url, "buffer_queue": url} (dlq, buffer may be absent)
    queues: dict[str, dict[str, str]]
    sessions_table: str | None = None
    intake_queue_url: str | None = None
    intake_dlq_url: str | None = None
    endpoint: str | None = None  # AWS_ENDPOINT_URL: a local emulator only
    identity: Identity | None = None


def chart_values(deployment: Deployment) -> dict[str, Any]:
    config: dict[str, str] = {
        "eventBusName": deployment.event_bus_name,
        "awsRegion": deployment.region,
    }
    optional = {
        "awsEndpointUrl": deployment.endpoint,
        "dashboardSessionsTable": deployment.sessions_table,
        "intakeQueueUrl": deployment.intake_queue_url,
        "intakeDlqUrl": deployment.intake_dlq_url,
    }
    config.update({key: value for key, value in optional.items() if value})
    consumers: dict[str, dict[str, Any]] = {}
    for destination, urls in sorted(deployment.queues.items()):
        consumers[destination] = {
            QUEUE_VALUES[kind]: url for kind, url in urls.items() if kind in QUEUE_VALUES and url
        }
    values: dict[str, Any] = {"config": config, "consumers": consumers}
    if deployment.identity:
        _add_identity(values, deployment.identity)
    return values


def _add_identity(values: dict[str, Any], identity: Identity) -> None:
    """ServiceAccount names always (the roles trust, or the associations name, exactly those);
    role annotations with IRSA only (with EKS Pod Identity the association is the binding)."""
    irsa = identity.mode == "irsa"
    api: dict[str, str] = {"name": identity.api_service_account}
    if irsa and identity.api_role_arn:
        api["roleArn"] = identity.api_role_arn
    values["api"] = {"serviceAccount": api}
    for destination, entry in values["consumers"].items():
        account: dict[str, str] = {}
        if destination in identity.consumer_service_accounts:
            account["name"] = identity.consumer_service_accounts[destination]
        if irsa and destination in identity.consumer_role_arns:
            account["roleArn"] = identity.consumer_role_arns[destination]
        if account:
            entry["serviceAccount"] = account


def write_values(path: Path, values: dict[str, Any], header: list[str]) -> None:
    """``values`` as JSON (valid YAML) under ``header`` as comment lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    comments = "".join(f"# {line}\n" for line in header)
    path.write_text(comments + json.dumps(values, indent=2) + "\n")
