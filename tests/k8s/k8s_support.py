"""Constants and helpers shared by the offline Kubernetes checks (fixtures: conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "datasync"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "ds"
NAMESPACE = "datasync"
# Kubernetes version the manifests are validated against (kubernetes-validate's bundled schemas)
# and that `helm lint` assumes; the kind node image in deploy/kind/cluster.yaml is the same minor.
KUBE_VERSION = "1.33.0"
TOOLS = Path(os.environ.get("DATASYNC_K8S_TOOLS", REPO / ".tools" / "k8s-checks"))

# Kinds that come from CRDs: kubernetes-validate has no schema for them (helm_tool.py `crds`
# checks them against the KEDA and Prometheus Operator models instead, external_secrets.mjs
# against the External Secrets Operator's).
CRD_KINDS = {
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PrometheusRule",
    "ExternalSecret",
}

# The Prometheus Operator's API: the chart renders its kinds only when the cluster serves it.
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"

# checkov checks the chart may waive, each with its reason in a checkov.io/skipN annotation.
ALLOWED_CHECKOV_WAIVERS = {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_8", "CKV_K8S_9"}

# The chart's default values plus the two things they cannot have: a database for the consumers
# and an API key. The default values alone must not render (INVALID below): a consumer without a
# database used to fall back to SQLite on its pod's emptyDir, which KEDA's scale-in wipes; and a
# key the chart generates is made again on every `helm template` (TEMPLATE_FAILURES).
DATABASE_URL = "postgresql://datasync@db.internal:5432/datasync?sslmode=verify-full"
API_KEY = "k" * 40
MINIMAL: dict[str, Any] = {"secrets": {"databaseUrl": DATABASE_URL, "apiKeys": API_KEY}}
TLS = [{"secretName": "datasync-tls", "hosts": ["datasync.example.com"]}]
# What the External Secrets Operator reads, for the ExternalSecret cases.
EXTERNAL_SECRET: dict[str, Any] = {
    "create": False,
    "externalSecret": {
        "enabled": True,
        "secretStoreRef": {"name": "aws-parameter-store", "kind": "ClusterSecretStore"},
        "apiKeys": {"key": "/datasync/test/api-keys"},
        "databaseUrl": {"key": "datasync/test/database-consumer", "property": "url"},
        "migrationDatabaseUrl": {"key": "datasync/test/database-owner", "property": "url"},
    },
}
DEPLOY_ENVIRONMENTS = ("staging", "prod")

# NetworkPolicyPeers of the usual neighbours: the ingress controller and Prometheus.
INGRESS_NGINX: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
}
MONITORING: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
}

# Values rendered besides the minimal values and the charts/datasync/ci files.
VARIANTS: dict[str, dict[str, Any]] = {
    # The documented dev-only way to run without a database: SQLite on an emptyDir, local mode.
    "variant-dev-ephemeral-sqlite": {
        "config": {"env": "local"},
        "devOnly": {"ephemeralSqliteStores": True},
    },
    # Without KEDA the consumer Deployments must carry replicas themselves.
    "variant-no-keda": {"keda": {"enabled": False}},
    # Without the HPA the API Deployment carries replicaCount.
    "variant-no-hpa": {"api": {"autoscaling": {"enabled": False}, "replicaCount": 3}},
    # Digest + Always: the CKV_K8S_43 / CKV_K8S_15 waivers must disappear.
    "variant-digest": {
        "api": {"image": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"}},
        "consumerDefaults": {"image": {"digest": "sha256:" + "b" * 64, "pullPolicy": "Always"}},
    },
    # Everything an operator can turn on to watch the system, scraped from one namespace only.
    "variant-monitoring": {
        "metrics": {
            "podAnnotations": True,
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "datasync"}},
            "prometheusRule": {
                "enabled": True,
                "alertLabels": {"team": "data"},
                "alerts": {
                    "consumerStuck": {"threshold": 120, "for": "7m", "severity": "warning"},
                    "apiRateLimited": {"enabled": False},
                },
            },
        },
        "api": {"ingress": {"enabled": True, "tls": TLS}},
        "networkPolicy": {
            "ingressControllerFrom": [INGRESS_NGINX],
            "metricsIngressFrom": [MONITORING],
        },
    },
    # Two proxies in front of the API that append to X-Forwarded-For (a CDN and a balancer).
    "variant-two-trusted-proxies": {
        "api": {"trustedProxies": 2},
        "networkPolicy": {"ingressControllerFrom": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
    },
    # The API without its metrics port (DATASYNC_API_METRICS_PORT=0).
    "variant-api-metrics-off": {
        "api": {"metricsPort": 0},
        "metrics": {"podAnnotations": True, "serviceMonitor": {"enabled": True}},
        "networkPolicy": {"metricsIngressFrom": [MONITORING]},
    },
    # Local mode (kind): a short development key is fine, and so is a database without TLS.
    "variant-local-mode-dev-key": {
        "config": {"env": "local"},
        "secrets": {"apiKeys": "local-dev-key", "databaseUrl": "postgresql://datasync@pg/datasync"},
    },
    # The keys stay out of Helm: the External Secrets Operator fills the chart's Secret (and the
    # migration Job's hook Secret, with the owner's URL) from AWS.
    "variant-external-secret": {"secrets": EXTERNAL_SECRET},
    # Without the migration Job each consumer migrates its own tables (its role may CREATE).
    "variant-migrations-off": {"migrations": {"enabled": False}},
    # The migration Job's own role, from the chart's Secret values.
    "variant-migration-role": {
        "secrets": {"migrationDatabaseUrl": DATABASE_URL.replace("datasync@", "owner@")}
    },
    # An Ingress whose TLS ends before it, said so explicitly.
    "variant-ingress-without-tls-allowed": {
        "api": {"ingress": {"enabled": True, "allowWithoutTls": True}},
        "networkPolicy": {"ingressControllerFrom": [INGRESS_NGINX]},
    },
    # An entry can switch a consumer off: its false must win over the default true (and the
    # dashboard has no row for it).
    "variant-one-consumer-off": {
        "metrics": {"grafanaDashboard": {"enabled": True}},
        "consumers": [
            {"destination": "crm", "queueUrl": "https://sqs.us-east-1.amazonaws.com/1/crm"},
            {"destination": "marketing", "enabled": False},
        ],
    },
}

# Values the schema must reject: case -> (values, text the error must contain). Apart from the
# database cases, each has a database, so it fails for its own reason alone.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    # Without a database the error lists the three ways out (see test_k8s_chart.py).
    "invalid-default-values": ({}, "/secrets/databaseUrl"),
    "invalid-empty-database-url": ({"secrets": {"databaseUrl": ""}}, "/secrets/databaseUrl"),
    "invalid-dev-sqlite-outside-local-mode": (
        {"devOnly": {"ephemeralSqliteStores": True}},
        "/config/env",
    ),
    "invalid-unknown-top-level-key": ({"replicas": 3}, "replicas"),
    "invalid-too-many-trusted-proxies": ({"api": {"trustedProxies": 6}}, "trustedProxies"),
    "invalid-unknown-nested-key": ({"api": {"autoscaling": {"targetCPU": 50}}}, "targetCPU"),
    "invalid-unknown-consumer-key": (
        {"consumers": [{"destination": "crm", "queueURL": "https://x"}]},
        "queueURL",
    ),
    "invalid-bad-type": (
        {"consumerDefaults": {"scaling": {"maxReplicaCount": "five"}}},
        "maxReplicaCount",
    ),
    "invalid-bad-enum": ({"config": {"env": "production"}}, "env"),
    "invalid-bad-role-arn": (
        {"keda": {"authentication": {"podIdentity": {"roleArn": "datasync-keda"}}}},
        "roleArn",
    ),
    # Outside local mode: a key of 31 characters (the API would exit 5), a database without
    # certificate checks (the consumers would refuse it).
    "invalid-short-api-key-outside-local-mode": (
        {"secrets": {"apiKeys": f"{'k' * 40},{'s' * 31}"}},
        "/secrets/apiKeys",
    ),
    "invalid-database-url-without-verify-full": (
        {"secrets": {"databaseUrl": "postgresql://datasync@db.internal/datasync?sslmode=require"}},
        "/secrets/databaseUrl",
    ),
    # Nothing in the cluster reads the analytics hash key (the Lambdas get it from Terraform).
    "invalid-analytics-hash-key": ({"secrets": {"analyticsHashKey": "x" * 20}}, "analyticsHashKey"),
}


# Values the templates refuse (schema-valid): case -> (values, API versions the cluster serves,
# text the error must contain).
TEMPLATE_FAILURES: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "fails-servicemonitor-without-prometheus-operator": (
        {
            "metrics": {"serviceMonitor": {"enabled": True}},
            "networkPolicy": {"metricsIngressFrom": [MONITORING]},
        },
        [],
        "metrics.serviceMonitor.enabled is true, but the cluster does not serve "
        "monitoring.coreos.com/v1",
    ),
    "fails-prometheusrule-without-prometheus-operator": (
        {"metrics": {"prometheusRule": {"enabled": True}}},
        [],
        "metrics.prometheusRule.enabled is true, but the cluster does not serve "
        "monitoring.coreos.com/v1",
    ),
    "fails-metrics-port-is-the-api-port": (
        {"api": {"metricsPort": 8080}},
        [],
        "api.metricsPort (8080) must differ from api.port",
    ),
    # Trusted proxies: any pod that reaches the API port could write X-Forwarded-For.
    "fails-ingress-without-naming-the-ingress-controller": (
        {"api": {"ingress": {"enabled": True, "tls": TLS}}},
        [],
        "set networkPolicy.ingressControllerFrom to the ingress controller's pods",
    ),
    "fails-trusted-proxies-beside-other-api-sources": (
        {
            "api": {"trustedProxies": 1},
            "networkPolicy": {
                "ingressControllerFrom": [INGRESS_NGINX],
                "apiIngressFrom": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
            },
        },
        [],
        "networkPolicy.apiIngressFrom would admit other sources to the API port",
    ),
    "fails-trusted-proxies-without-network-policies": (
        {"api": {"trustedProxies": 1}, "networkPolicy": {"enabled": False}},
        [],
        "keep networkPolicy.enabled=true with networkPolicy.ingressControllerFrom",
    ),
    "fails-scraping-without-naming-the-scraper": (
        {"metrics": {"podAnnotations": True}},
        [],
        "networkPolicy.metricsIngressFrom is empty, which admits no one",
    ),
    # `lookup` is empty under `helm template` and GitOps tools: a new key on every sync.
    "fails-generated-api-key-outside-local-mode": (
        {"secrets": {"apiKeys": ""}},
        [],
        "secrets.apiKeys is empty with secrets.create=true and config.env=aws",
    ),
    "fails-ingress-without-tls-outside-local-mode": (
        {
            "api": {"ingress": {"enabled": True}},
            "networkPolicy": {"ingressControllerFrom": [INGRESS_NGINX]},
        },
        [],
        "api.ingress has no TLS: outside config.env=local",
    ),
    # KEDA reads the role to assume from the ServiceAccount's IRSA annotation.
    "fails-keda-workload-identity-for-a-consumer-without-a-role": (
        {
            "keda": {"authentication": {"podIdentity": {"identityOwner": "workload"}}},
            "consumers": {
                "crm": {"serviceAccount": {"roleArn": "arn:aws:iam::123456789012:role/crm"}},
            },
        },
        [],
        "identityOwner=workload, but consumers.analytics.serviceAccount.roleArn is empty",
    ),
    "fails-external-secret-beside-secrets-create": (
        {"secrets": {**EXTERNAL_SECRET, "create": True}},
        [],
        "secrets.externalSecret.enabled and secrets.create both write the chart's Secret",
    ),
    "fails-external-secret-without-its-store": (
        {
            "secrets": {
                **EXTERNAL_SECRET,
                "externalSecret": {**EXTERNAL_SECRET["externalSecret"], "secretStoreRef": {}},
            }
        },
        [],
        "secrets.externalSecret.secretStoreRef.name is empty",
    ),
    "fails-a-map-entry-naming-another-destination": (
        {"consumers": {"crm": {"destination": "marketing"}}},
        [],
        'consumers.crm.destination is "marketing"',
    ),
}


def cluster_api_versions(values: dict[str, Any]) -> list[str]:
    """The extra APIs of the cluster a positive case is rendered for: one with the Prometheus
    Operator when the values turn on its kinds, else a bare one (the defaults need nothing)."""
    metrics = values.get("metrics", {})
    wants_operator = any(
        metrics.get(kind, {}).get("enabled") for kind in ("serviceMonitor", "prometheusRule")
    )
    return [PROMETHEUS_OPERATOR_API] if wants_operator else []


def with_database(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus MINIMAL's database URL, unless they say something about it themselves."""
    if "databaseUrl" in values.get("secrets", {}) or "devOnly" in values:
        return values
    return {**values, "secrets": {**MINIMAL["secrets"], **values.get("secrets", {})}}


def tool(name: str) -> Path:
    """A program from the checkers' venv; fails (not skips) when the venv is missing."""
    path = TOOLS / "bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: build the checkers' venv with "
            "`make .tools/k8s-checks/.installed` (mk/k8s.mk), or set DATASYNC_K8S_TOOLS",
            pytrace=False,
        )
    return path


def run(
    args: list[str | Path], *, stdin: str | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def helm_tool(command: str, request: dict[str, Any]) -> dict[str, Any]:
    """Runs helm_tool.py (render, crds or promql) in the checkers' venv."""
    script = REPO / "tests" / "k8s" / "helm_tool.py"
    proc = run([tool("python"), script, command], stdin=json.dumps(request))
    if proc.returncode != 0:
        pytest.fail(f"helm_tool.py {command} failed:\n{proc.stderr}", pytrace=False)
    return json.loads(proc.stdout)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def positive_cases() -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {"minimal": MINIMAL}
    for path in CI_VALUES:
        cases[f"ci-{path.stem}"] = load_yaml(path) or {}
    for env in DEPLOY_ENVIRONMENTS:
        cases[f"deploy-{env}"] = deploy_values(env)
    cases.update({name: with_database(values) for name, values in VARIANTS.items()})
    return cases


def load_deploy_script(name: str) -> ModuleType:
    """A script of deploy/ (no package), loaded as a module."""
    path = REPO / "deploy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merged(base: Any, over: Any) -> Any:
    """Helm's layering of values files: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: merged(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def outputs_fixture(env: str) -> dict[str, Any]:
    """A recorded `terraform output -json` of the root (tests/fixtures/terraform)."""
    return json.loads((REPO / f"tests/fixtures/terraform/outputs-{env}.json").read_text())


def generated_values(env: str) -> dict[str, Any]:
    """What deploy/values_from_outputs.py writes for the recorded outputs of ``env``."""
    script = load_deploy_script("values_from_outputs")
    values: dict[str, Any] = script.chart_values(script.deployment(outputs_fixture(env)))
    return values


def deploy_values(env: str) -> dict[str, Any]:
    """deploy/<env>/values.generated.yaml (from the recorded outputs), then deploy/<env>/values.yaml,
    as `helm -f ... -f ...` layers them."""
    return merged(generated_values(env), load_yaml(REPO / f"deploy/{env}/values.yaml"))


def invalid_cases() -> dict[str, tuple[dict[str, Any], str]]:
    """INVALID, each given a database unless the case is about the database."""
    database_cases = ("invalid-default-values", "invalid-empty-database-url")
    return {
        name: (values if name in database_cases else with_database(values), expected)
        for name, (values, expected) in INVALID.items()
    }


def lint_cases() -> list[str]:
    return (
        ["minimal"]
        + [f"ci-{p.stem}" for p in CI_VALUES]
        + [f"deploy-{env}" for env in DEPLOY_ENVIRONMENTS]
    )


def parse_manifests(files: dict[str, str]) -> list[dict[str, Any]]:
    """Rendered templates -> documents; each keeps its template path under "__template"."""
    docs: list[dict[str, Any]] = []
    for template, text in sorted(files.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append({**doc, "__template": template})
    return docs


def strip_private(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("__")}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment and Job template and bare Pod."""
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
    return specs


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def component(doc: dict[str, Any]) -> str | None:
    return (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def consumer_deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in of_kind(docs, "Deployment") if (component(d) or "").startswith("consumer-")]


def settings_config_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap the pods read their settings from (envFrom), not the dashboard's."""
    found = [d for d in of_kind(docs, "ConfigMap") if component(d) == "config"]
    assert len(found) == 1, f"expected one settings ConfigMap, found {len(found)}"
    return found[0]


def api_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in of_kind(docs, "Deployment") if component(d) == "api"]
    assert len(found) == 1, f"expected one API Deployment, found {len(found)}"
    return found[0]


def load_kind_values() -> ModuleType:
    """deploy/kind/kind_values.py, which `make kind-up` runs as a script (deploy/ is no package)."""
    return load_deploy_script("kind/kind_values")


def consumer_entries(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``consumers`` of some values, map or list form, keyed by destination."""
    found = values.get("consumers", {})
    if isinstance(found, dict):
        return {name: {**(entry or {}), "destination": name} for name, entry in found.items()}
    return {entry["destination"]: entry for entry in found}


def external_secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """external_secrets.mjs's answer for each ExternalSecret: {"kind", "name", "errors"}."""
    npm = TOOLS / "npm" / "node_modules"
    if not npm.is_dir():
        pytest.fail(f"{npm} is missing: `make .tools/k8s-checks/.installed`", pytrace=False)
    with tempfile.TemporaryDirectory() as folder:
        # Node resolves packages from the script's folder: put the script beside them.
        script = Path(folder) / "external_secrets.mjs"
        shutil.copy(REPO / "tests/k8s/external_secrets.mjs", script)
        (Path(folder) / "node_modules").symlink_to(npm)
        proc = run(["node", script], stdin=json.dumps(objects))
    if proc.returncode != 0:
        pytest.fail(f"external_secrets.mjs failed:\n{proc.stderr}", pytrace=False)
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results
