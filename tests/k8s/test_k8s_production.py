"""Offline checks of the chart's production pieces: the schema migration Job and the consumers
that only check the schema, the ExternalSecret, the API's status page on a cluster, the ALB
Ingress, and the staging/prod values generated from recorded `terraform output -json`
documents (tests/fixtures/terraform) layered with the hand-written deploy/<env>/values.yaml.
The refusals (each with what to do) are TEMPLATE_FAILURES in k8s_support.py, checked by
test_k8s_monitoring.py::test_the_chart_refuses_with_what_to_do."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from apps.api.dashboard_data import QUEUES_SHOWN, StatusCollector
from datasync.contract import DESTINATIONS
from datasync.settings import Settings
from tests.k8s.k8s_support import (
    DEPLOY_ENVIRONMENTS,
    REPO,
    api_deployment,
    by_name,
    component,
    consumer_deployments,
    env_of,
    external_secrets,
    generated_values,
    load_deploy_script,
    load_yaml,
    of_kind,
    outputs_fixture,
    positive_cases,
    strip_private,
)

pytestmark = pytest.mark.k8s

HOOKS = "pre-install,pre-upgrade"


def migration_job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = of_kind(docs, "Job")
    return job


def hook_weight(doc: dict[str, Any]) -> int:
    return int(doc["metadata"]["annotations"]["helm.sh/hook-weight"])


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """env name -> (Secret, key) of every secretKeyRef."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def settings_from(container: dict[str, Any], **extra: str) -> Settings:
    """What datasync/settings.py makes of a container's plain env (secret values stand in)."""
    values = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    values.update(extra)
    return Settings(**values)


# --- The migration Job ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["minimal", "ci-eks-values", "variant-external-secret", "deploy-prod"]
)
def test_the_migration_job_runs_datasync_migrate_before_install_and_upgrade(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    job = migration_job(docs)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == HOOKS
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 0
    (container,) = pod["containers"]
    assert container["command"][:2] == ["datasync-migrate", "--wait"]
    consumer = consumer_deployments(docs)[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == consumer["image"], "the consumer image runs the migration"
    # What it needs exists before it: hooks of a lower weight (a pre-install hook runs before
    # the release's own resources exist).
    account = by_name(docs, "ServiceAccount")[pod["serviceAccountName"]]
    assert account["metadata"]["annotations"]["helm.sh/hook"] == HOOKS
    assert hook_weight(account) < hook_weight(job)
    refs = secret_refs(container)
    assert refs["DATABASE_URL"][1] == "DATABASE_URL"
    assert refs["DATABASE_MIGRATION_URL"][1] == "DATABASE_MIGRATION_URL"
    secret_name = refs["DATABASE_URL"][0]
    values = positive_cases()[case]["secrets"]
    if values.get("create") is False and not values.get("externalSecret", {}).get("enabled"):
        assert secret_name == values["existingSecret"], "your own Secret exists beforehand"
        return
    hooks = [
        d
        for d in docs
        if d["kind"] in ("Secret", "ExternalSecret") and d["metadata"]["name"] == secret_name
    ]
    (hook,) = hooks
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == HOOKS
    assert hook_weight(hook) < hook_weight(job)
    assert "hook-succeeded" in hook["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


def test_the_migration_role_is_the_jobs_alone(manifests: dict[str, list]) -> None:
    """The owner's URL is in the Job's hook Secret, never in the pods' Secret or a consumer."""
    docs = manifests["variant-migration-role"]
    owner_url = positive_cases()["variant-migration-role"]["secrets"]["migrationDatabaseUrl"]
    secrets = {component(s): s for s in of_kind(docs, "Secret")}
    assert secrets["migrate"]["stringData"]["DATABASE_MIGRATION_URL"] == owner_url
    assert "DATABASE_MIGRATION_URL" not in secrets["config"]["stringData"]
    for doc in [*consumer_deployments(docs), api_deployment(docs)]:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        assert "DATABASE_MIGRATION_URL" not in env_of(container), component(doc)
    external = manifests["variant-external-secret"]
    by_component = {component(e): e for e in of_kind(external, "ExternalSecret")}
    assert {d["secretKey"] for d in by_component["config"]["spec"]["data"]} == {
        "DATASYNC_API_KEYS",
        "DATABASE_URL",
    }
    migrate = {d["secretKey"]: d["remoteRef"] for d in by_component["migrate"]["spec"]["data"]}
    assert migrate["DATABASE_MIGRATION_URL"] == {
        "key": "datasync/test/database-owner",
        "property": "url",
    }
    job = migration_job(external)["spec"]["template"]["spec"]["containers"][0]
    assert secret_refs(job)["DATABASE_URL"][0] == by_component["migrate"]["spec"]["target"]["name"]


@pytest.mark.parametrize("case", ["minimal", "deploy-staging", "variant-migrations-off"])
def test_consumers_only_check_the_schema_when_the_job_migrates(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    jobs = of_kind(docs, "Job")
    for doc in consumer_deployments(docs):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        settings = settings_from(container)
        assert settings.store_schema == ("check" if jobs else "migrate"), component(doc)
    if case == "variant-migrations-off":
        assert not jobs


def test_the_jobs_settings_are_the_ones_datasync_migrate_reads(manifests: dict[str, list]) -> None:
    job = migration_job(manifests["minimal"])["spec"]["template"]["spec"]["containers"][0]
    owner, consumer = "postgresql://owner@db/d", "postgresql://app@db/d"
    settings = settings_from(job, DATABASE_URL=consumer, DATABASE_MIGRATION_URL=owner)
    assert settings.env == "aws" and settings.database_migration_url.get_secret_value() == owner
    # The command is a console script of the project (the consumer image installs them all).
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts[job["command"][0]].partition(":")
    assert (REPO / (module.replace(".", "/") + ".py")).is_file() and function == "main"


def test_no_migration_job_for_throwaway_sqlite_stores(manifests: dict[str, list]) -> None:
    docs = manifests["variant-dev-ephemeral-sqlite"]
    assert not of_kind(docs, "Job")
    for doc in consumer_deployments(docs):
        env = env_of(doc["spec"]["template"]["spec"]["containers"][0])
        assert "DATASYNC_STORE_SCHEMA" not in env, "each pod's own SQLite file migrates itself"


def test_the_migration_pod_may_reach_only_dns_and_postgres(manifests: dict[str, list]) -> None:
    docs = manifests["deploy-prod"]
    (policy,) = [d for d in of_kind(docs, "NetworkPolicy") if component(d) == "migrate"]
    spec = policy["spec"]
    job = migration_job(docs)["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= job.items()
    assert spec["ingress"] == []
    ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
    assert ports == {53, 5432}


# --- The ExternalSecret ----------------------------------------------------------------------


def test_the_external_secret_fills_the_secret_the_pods_read(manifests: dict[str, list]) -> None:
    docs = manifests["variant-external-secret"]
    assert not [s for s in of_kind(docs, "Secret") if component(s) == "config"]
    (external,) = [e for e in of_kind(docs, "ExternalSecret") if component(e) == "config"]
    spec = external["spec"]
    assert spec["secretStoreRef"] == {"name": "aws-parameter-store", "kind": "ClusterSecretStore"}
    assert spec["target"]["creationPolicy"] == "Owner" and spec["refreshInterval"] == "1h"
    refs = {d["secretKey"]: d["remoteRef"] for d in spec["data"]}
    assert refs["DATASYNC_API_KEYS"] == {"key": "/datasync/test/api-keys"}
    api = api_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert secret_refs(api)["DATASYNC_API_KEYS"] == (spec["target"]["name"], "DATASYNC_API_KEYS")
    for doc in consumer_deployments(docs):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        assert secret_refs(container)["DATABASE_URL"] == (spec["target"]["name"], "DATABASE_URL")


def test_the_external_secrets_check_rejects_bad_objects(manifests: dict[str, list]) -> None:
    (external,) = [
        strip_private(e)
        for e in of_kind(manifests["variant-external-secret"], "ExternalSecret")
        if component(e) == "config"
    ]
    misspelt = copy.deepcopy(external)
    misspelt["spec"]["refreshIntervall"] = misspelt["spec"].pop("refreshInterval")
    bad_kind = copy.deepcopy(external)
    bad_kind["spec"]["secretStoreRef"]["kind"] = "ParameterStore"
    no_key = copy.deepcopy(external)
    del no_key["spec"]["data"][0]["remoteRef"]["key"]
    old_api = copy.deepcopy(external)
    old_api["apiVersion"] = "external-secrets.io/v1beta2"
    results = external_secrets([external, misspelt, bad_kind, no_key, old_api])
    assert results[0]["errors"] == []
    assert all(r["errors"] for r in results[1:]), json.dumps(results, indent=2)
    assert "refreshIntervall: unknown field" in results[1]["errors"][0]


# --- The API's status page and Ingress ------------------------------------------------------


@pytest.mark.parametrize("case", ["deploy-staging", "deploy-prod", "ci-kind-values"])
def test_the_api_gets_every_queue_the_status_page_shows(
    case: str, manifests: dict[str, list]
) -> None:
    container = api_deployment(manifests[case])["spec"]["template"]["spec"]["containers"][0]
    collector = StatusCollector.from_settings(settings_from(container))
    kinds = QUEUES_SHOWN if case.startswith("deploy-") else ("queue",)
    for destination in DESTINATIONS:
        for kind in kinds:
            assert collector._queue_urls[destination][kind], (destination, kind)
    if case.startswith("deploy-"):
        assert collector._intake_urls and all(collector._intake_urls.values())


def test_prod_exposes_the_api_through_an_alb_on_https_only(
    manifests: dict[str, list], render_results: dict[str, dict]
) -> None:
    (ingress,) = of_kind(manifests["deploy-prod"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "alb"
    annotations = ingress["metadata"]["annotations"]
    prefix = "alb.ingress.kubernetes.io/"
    assert annotations[prefix + "certificate-arn"].startswith("arn:aws:acm:")
    assert json.loads(annotations[prefix + "listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations[prefix + "ssl-redirect"] == "443"
    assert annotations[prefix + "ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert annotations[prefix + "target-type"] == "ip"
    assert annotations[prefix + "healthcheck-path"] in ("/readyz", "/healthz")
    notes = render_results["deploy-prod"]["manifests"]["datasync/templates/NOTES.txt"]
    assert "https://datasync.example.com/healthz" in notes


# --- Values generated from `terraform output -json` -----------------------------------------


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if isinstance(node, dict):
        return {p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))}
    return {prefix}


@pytest.mark.parametrize("env", DEPLOY_ENVIRONMENTS)
def test_hand_written_values_repeat_no_generated_key(env: str) -> None:
    generated = leaf_paths(generated_values(env))
    hand_written = leaf_paths(load_yaml(REPO / f"deploy/{env}/values.yaml"))
    assert generated and hand_written
    assert not generated & hand_written, sorted(generated & hand_written)


@pytest.mark.parametrize("env", DEPLOY_ENVIRONMENTS)
def test_generated_values_carry_every_output_the_chart_takes(
    env: str, manifests: dict[str, list]
) -> None:
    outputs = {k: v["value"] for k, v in outputs_fixture(env).items()}
    docs = manifests[f"deploy-{env}"]
    config = next(d for d in of_kind(docs, "ConfigMap") if component(d) == "config")["data"]
    assert config["DATASYNC_EVENT_BUS_NAME"] == outputs["event_bus_name"]
    assert config["AWS_REGION"] == outputs["region"]
    assert config["DATASYNC_DASHBOARD_SESSIONS_TABLE"] == outputs["dashboard_sessions_table"]
    identity = outputs["workload_identity"]
    accounts = by_name(docs, "ServiceAccount")
    api_spec = api_deployment(docs)["spec"]["template"]["spec"]
    assert api_spec["serviceAccountName"] == identity["service_accounts"]["api"]
    irsa = identity["mode"] == "irsa"
    for doc in consumer_deployments(docs):
        destination = component(doc).removeprefix("consumer-")
        spec = doc["spec"]["template"]["spec"]
        env_vars = env_of(spec["containers"][0])
        assert env_vars["DATASYNC_QUEUE_URL"]["value"] == outputs["queue_urls"][destination]
        name = spec["serviceAccountName"]
        assert name == identity["service_accounts"]["consumers"][destination]
        role = (accounts[name]["metadata"].get("annotations") or {}).get(
            "eks.amazonaws.com/role-arn"
        )
        # IRSA: the role on the ServiceAccount; Pod Identity: the association is the binding.
        assert role == (outputs["consumer_role_arns"][destination] if irsa else None)
    (auth,) = of_kind(docs, "TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "aws"}, "the KEDA operator's identity"


def test_the_generator_writes_the_file_helm_layers_first(tmp_path: Path, capsys) -> None:
    script = load_deploy_script("values_from_outputs")
    source = REPO / "tests/fixtures/terraform/outputs-prod.json"
    assert script.main(["values_from_outputs.py", "prod", str(source)], deploy_dir=tmp_path) == 0
    written = tmp_path / "prod/values.generated.yaml"
    text = written.read_text()
    assert text.startswith("# Generated by deploy/values_from_outputs.py")
    assert load_yaml(written) == generated_values("prod")
    assert "install into namespace 'datasync' (irsa)" in capsys.readouterr().out
    broken = tmp_path / "outputs.json"
    outputs = json.loads(source.read_text())
    del outputs["queue_urls"], outputs["region"]
    broken.write_text(json.dumps(outputs))
    assert script.main(["x", "prod", str(broken)], deploy_dir=tmp_path) == 1
    assert "missing outputs: region, queue_urls" in capsys.readouterr().err
    assert script.main(["x", "qa", str(source)], deploy_dir=tmp_path) == 2


def test_without_workload_roles_the_generator_names_no_service_account() -> None:
    script = load_deploy_script("values_from_outputs")
    outputs = outputs_fixture("prod")
    for name in ("workload_identity", "api_role_arn", "consumer_role_arns", "keda_role_arn"):
        outputs[name]["value"] = None  # eks_cluster_name = null: the root made no roles
    values = script.chart_values(script.deployment(outputs))
    assert "api" not in values
    assert all("serviceAccount" not in entry for entry in values["consumers"].values())


def test_staging_and_prod_let_the_keda_operator_read_the_queues_itself() -> None:
    for env in DEPLOY_ENVIRONMENTS:
        identity = load_yaml(REPO / f"deploy/{env}/values.yaml")["keda"]["authentication"]
        assert identity["podIdentity"]["identityOwner"] == "", env
