"""Fixtures for the offline Kubernetes checks (marker `k8s`).

The checkers live in their own venv, .tools/k8s-checks (mk/k8s.mk builds it from
requirements/k8s-checks.lock): checkov's dependencies conflict with the project's, so these tests
run in the project's .venv and call the checkers through subprocess:

- helm_tool.py (this folder), run by that venv's Python: Helm 4's engine (helm-python-sdk)
  renders and lints the chart; the cloudcoil KEDA models validate ScaledObjects and
  TriggerAuthentications;
- kubernetes-validate, checkov, hadolint, shellcheck and check-jsonschema as CLIs.

The chart is rendered once per session for every case (the minimal values, each charts/datasync/ci
file, the variants and the invalid inputs of k8s_support.py), in one subprocess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.k8s_support import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    TEMPLATE_FAILURES,
    cluster_api_versions,
    helm_tool,
    invalid_cases,
    lint_cases,
    parse_manifests,
    positive_cases,
    strip_private,
    with_database,
)


@pytest.fixture(scope="session")
def render_results() -> dict[str, dict[str, Any]]:
    """helm_tool.py's answer for every case: {"ok", "error", "manifests", "lint"}. Positive cases
    that turn on Prometheus Operator kinds render for a cluster that serves its API."""
    cases = {
        name: {
            "values": values,
            "lint": name in lint_cases(),
            "api_versions": cluster_api_versions(values),
        }
        for name, values in positive_cases().items()
    }
    for name, (values, _) in invalid_cases().items():
        cases[name] = {"values": values, "lint": False}
    for name, (values, api_versions, _) in TEMPLATE_FAILURES.items():
        cases[name] = {"values": with_database(values), "lint": False, "api_versions": api_versions}
    return helm_tool(
        "render",
        {
            "chart": str(CHART),
            "release": RELEASE,
            "namespace": NAMESPACE,
            "kube_version": f"v{KUBE_VERSION}",
            "cases": cases,
        },
    )


@pytest.fixture(scope="session")
def manifests(render_results: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Parsed documents of every positive case."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in positive_cases():
        result = render_results[name]
        assert result["ok"], f"{name} did not render: {result['error']}"
        out[name] = parse_manifests(result["manifests"])
        assert out[name], f"{name} rendered no manifests"
    return out


@pytest.fixture(scope="session")
def manifest_dir(
    tmp_path_factory: pytest.TempPathFactory, manifests: dict[str, list[dict[str, Any]]]
) -> Path:
    """Every positive case's documents, one per file: <dir>/<case>/<nn>-<kind>-<name>.yaml."""
    root = tmp_path_factory.mktemp("rendered")
    for case, docs in manifests.items():
        folder = root / case
        folder.mkdir()
        for index, doc in enumerate(docs):
            name = f"{index:02d}-{doc['kind']}-{doc['metadata'].get('name', 'unnamed')}.yaml"
            (folder / name).write_text(yaml.safe_dump(strip_private(doc), sort_keys=False))
    return root
