"""Offline checks of charts/datasync: Helm 4 render + lint, Kubernetes 1.33 schemas, KEDA models,
checkov, and assertions on the rendered objects. See conftest.py for how the checkers run."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.k8s_support import (
    ALLOWED_CHECKOV_WAIVERS,
    CHART,
    CI_VALUES,
    CRD_KINDS,
    INVALID,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    api_deployment,
    by_name,
    component,
    consumer_deployments,
    consumer_entries,
    env_of,
    external_secrets,
    helm_tool,
    lint_cases,
    load_yaml,
    of_kind,
    pod_specs,
    positive_cases,
    run,
    settings_config_map,
    strip_private,
    tool,
)

pytestmark = pytest.mark.k8s

CASES = list(positive_cases())
# The cases that describe real deployments (the variants only flip one switch each).
MAIN_CASES = lint_cases()
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
)
DRAIN_SECONDS = 20 + 60  # one SQS long poll + one batch within the visibility timeout


def ci_case(predicate: Any) -> str:
    """The ci/ values case that matches predicate(values); fails if none does."""
    for path in CI_VALUES:
        if predicate(load_yaml(path) or {}):
            return f"ci-{path.stem}"
    pytest.fail("no charts/datasync/ci/*.yaml file matches")


def kind_case() -> str:
    return ci_case(
        lambda v: (
            v.get("keda", {}).get("authentication", {}).get("mode") == "secret"
            and bool(v.get("config", {}).get("awsEndpointUrl"))
        )
    )


def eks_case() -> str:
    return ci_case(
        lambda v: bool(
            v.get("keda", {}).get("authentication", {}).get("podIdentity", {}).get("roleArn")
        )
    )


# --- Helm: render and lint ----------------------------------------------------------------------


def test_ci_values_cover_kind_and_eks() -> None:
    assert len(CI_VALUES) >= 2, "charts/datasync/ci needs a kind and an EKS values file"
    assert kind_case() != eks_case()


@pytest.mark.parametrize("case", CASES)
def test_chart_renders(case: str, manifests: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {d["kind"] for d in manifests[case]}
    assert {"Deployment", "ConfigMap", "ServiceAccount"} <= kinds, kinds
    for doc in manifests[case]:
        assert doc["metadata"].get("namespace") == NAMESPACE, (
            f"{doc['kind']}/{doc['metadata'].get('name')} has no namespace"
        )


@pytest.mark.parametrize("case", MAIN_CASES)
def test_helm_lint_is_clean(case: str, render_results: dict[str, dict[str, Any]]) -> None:
    report = render_results[case]["lint"]
    assert report is not None and report["total_charts_linted"] == 1, report
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warning or error
    assert not problems and not report["errors"], json.dumps(report, indent=2)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_values_schema_rejects(case: str, render_results: dict[str, dict[str, Any]]) -> None:
    _, expected = INVALID[case]
    result = render_results[case]
    assert not result["ok"], f"{case} rendered although its values are invalid"
    assert "schema" in result["error"] and expected in result["error"], result["error"]


def test_default_values_fail_and_name_every_way_to_give_the_consumers_a_database(
    render_results: dict[str, dict[str, Any]],
) -> None:
    """Without a database KEDA's scale-in would wipe SQLite stores on emptyDirs: no render,
    and the error lists what to set (Helm prints each alternative of the schema's anyOf)."""
    error = render_results["invalid-default-values"]["error"]
    assert error is not None, "the chart's default values rendered without a database"
    for way_out in (
        "at '/secrets/databaseUrl': minLength",  # a PostgreSQL DSN in the chart's Secret
        "at '/secrets/create': value must be false",  # or a Secret of your own (DATABASE_URL)
        "at '/devOnly/ephemeralSqliteStores': value must be true",  # or the dev-only setting
    ):
        assert way_out in error, error
    outside_local = render_results["invalid-dev-sqlite-outside-local-mode"]["error"]
    assert "at '/config/env': value must be 'local'" in outside_local, outside_local


def test_the_dev_only_setting_renders_sqlite_emptydirs_and_warns(
    manifests: dict[str, list], render_results: dict[str, dict[str, Any]]
) -> None:
    case = "variant-dev-ephemeral-sqlite"
    assert positive_cases()[case]["devOnly"] == {"ephemeralSqliteStores": True}
    assert "databaseUrl" not in positive_cases()[case].get("secrets", {})
    config = settings_config_map(manifests[case])
    assert config["data"]["DATASYNC_ENV"] == "local"
    notes = render_results[case]["manifests"]["datasync/templates/NOTES.txt"]
    assert "WARNING: devOnly.ephemeralSqliteStores is on" in notes
    minimal_notes = render_results["minimal"]["manifests"]["datasync/templates/NOTES.txt"]
    assert "ephemeralSqliteStores" not in minimal_notes


# Conditions over values the structural schema already describes (and closes): they must not
# close objects themselves, or a partial description would reject every other key.
CONDITION_KEYWORDS = {"allOf", "anyOf", "oneOf", "not", "if", "then", "else"}


def _schema_objects(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            if key not in CONDITION_KEYWORDS:
                found.extend(_schema_objects(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_schema_objects(value, f"{path}[{index}]"))
    return found


def test_values_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = _schema_objects(schema)
    assert len(objects) > 20, "the schema should describe the values in depth"
    open_objects = [p for p, o in objects if o.get("additionalProperties") is not False]
    assert not open_objects, f"objects that accept unknown keys: {open_objects}"


def _leaf_keys_without_docs(text: str) -> list[str]:
    """values.yaml keys whose line, or an ancestor's line, has no comment right above it."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented)
    previous = ""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:-\s+)?([A-Za-z0-9_.-]+):(.*)$", line)
        if match and not line.lstrip().startswith("#"):
            indent = len(match.group(1)) + (2 if line.lstrip().startswith("- ") else 0)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = previous.lstrip().startswith("#") or any(d for _, d in stack)
            value = match.group(3).strip()
            following = next((ln for ln in lines[number + 1 :] if ln.strip()), "")
            is_parent = value == "" and len(following) - len(following.lstrip()) > indent
            if not is_parent and not documented:
                undocumented.append(f"line {number + 1}: {line.strip()}")
            stack.append((indent, documented))
        if line.strip():
            previous = line
    return undocumented


def test_values_yaml_documents_every_key() -> None:
    text = (CHART / "values.yaml").read_text()
    assert len(text.splitlines()) > 100
    assert not _leaf_keys_without_docs(text)
    # The checker itself notices a key without a comment.
    assert _leaf_keys_without_docs("a:\n  # -- doc\n  b: 1\nc: 2\n") == ["line 4: c: 2"]


# --- Kubernetes schemas, KEDA models, checkov ---------------------------------------------------


def test_core_manifests_validate_against_kubernetes_schemas(manifest_dir: Path) -> None:
    files = sorted(manifest_dir.rglob("*.yaml"))
    core = [f for f in files if f.name.split("-")[1] not in CRD_KINDS]
    assert core and len(core) < len(files), "expected both core and CRD manifests"
    proc = run([tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, *core])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in core:
        assert f"INFO {path} passed" in proc.stdout, f"{path} was not validated:\n{proc.stdout}"


def test_kubernetes_validate_catches_a_typo(tmp_path: Path, manifests: dict[str, list]) -> None:
    deployment = copy.deepcopy(strip_private(api_deployment(manifests["minimal"])))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    proc = run([tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, bad])
    assert proc.returncode != 0 and "livenessprobe" in proc.stdout, proc.stdout


def _keda_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        strip_private(d) for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")
    ]


def test_crd_objects_validate_against_keda_and_prometheus_operator_models(
    manifests: dict[str, list],
) -> None:
    objects = [
        strip_private(d) for case in CASES for d in manifests[case] if d["kind"] in CRD_KINDS
    ]
    assert {o["kind"] for o in objects} == CRD_KINDS
    operators = [o for o in objects if o["kind"] != "ExternalSecret"]
    answer = helm_tool("crds", {"objects": operators})
    assert len(answer["results"]) == len(operators)
    results = answer["results"] + external_secrets(
        [o for o in objects if o["kind"] == "ExternalSecret"]
    )
    failures = [r for r in results if r["errors"]]
    assert not failures, json.dumps(failures, indent=2)


def test_keda_model_check_rejects_bad_objects(manifests: dict[str, list]) -> None:
    scaled = next(o for o in _keda_objects(manifests[kind_case()]) if o["kind"] == "ScaledObject")
    unknown = copy.deepcopy(scaled)
    unknown["spec"]["minReplicas"] = 0  # not a ScaledObject field (minReplicaCount is)
    wrong_type = copy.deepcopy(scaled)
    wrong_type["spec"]["maxReplicaCount"] = "many"
    non_string = copy.deepcopy(scaled)
    non_string["spec"]["triggers"][0]["metadata"]["queueLength"] = (
        5  # metadata is map[string]string
    )
    answer = helm_tool("crds", {"objects": [unknown, wrong_type, non_string]})
    assert all(r["errors"] for r in answer["results"]), answer


def test_prometheus_operator_model_check_rejects_bad_objects(manifests: dict[str, list]) -> None:
    docs = [strip_private(d) for d in manifests["variant-monitoring"]]
    (rule,) = of_kind(docs, "PrometheusRule")
    monitor = of_kind(docs, "ServiceMonitor")[0]
    unknown = copy.deepcopy(rule)
    unknown["spec"]["groups"][0]["rules"][0]["fore"] = "5m"  # `for`, misspelt
    bad_duration = copy.deepcopy(rule)
    bad_duration["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    bad_endpoint = copy.deepcopy(monitor)
    bad_endpoint["spec"]["endpoints"][0]["interval"] = 30
    answer = helm_tool("crds", {"objects": [unknown, bad_duration, bad_endpoint]})
    assert all(r["errors"] for r in answer["results"]), answer


def test_checkov_passes_with_documented_waivers_only(manifest_dir: Path) -> None:
    proc = run(
        [
            tool("checkov"),
            "--skip-download",
            "--framework",
            "kubernetes",
            "--compact",
            "-o",
            "json",
            "-d",
            manifest_dir,
        ],
        timeout=600,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    kubernetes = [r for r in reports if r.get("check_type") == "kubernetes"]
    assert kubernetes, proc.stdout[:2000] + proc.stderr[-2000:]
    results = kubernetes[0]["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert not failed, "\n".join(map(str, failed))
    assert kubernetes[0]["summary"]["passed"] > 100
    assert kubernetes[0]["summary"]["parsing_errors"] == 0
    assert results["skipped_checks"], "the chart's waivers were not seen"
    for skipped in results["skipped_checks"]:
        assert skipped["check_id"] in ALLOWED_CHECKOV_WAIVERS, skipped["check_id"]
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"no reason for {skipped['check_id']} on {skipped['resource']}"
    assert proc.returncode == 0


@pytest.mark.parametrize("case", ["minimal", "variant-digest"])
def test_checkov_waivers_follow_the_image_settings(case: str, manifests: dict[str, list]) -> None:
    for doc in of_kind(manifests[case], "Deployment"):
        annotations = doc["metadata"].get("annotations") or {}
        waived = {
            v.split("=")[0] for k, v in annotations.items() if k.startswith("checkov.io/skip")
        }
        if case == "variant-digest":
            assert waived == {"CKV_K8S_35"}, waived
            image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
            assert "@sha256:" in image
        else:
            assert waived == {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35"}, waived


# --- Assertions on the rendered objects ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_security_context_everywhere(case: str, manifests: dict[str, list]) -> None:
    specs = pod_specs(manifests[case])
    assert len(specs) >= 2
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert spec["containers"], name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["runAsNonRoot"] is True, name
            assert sc.get("privileged", False) is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if container["name"] != "healthz":
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is not an emptyDir"


@pytest.mark.parametrize("case", CASES)
def test_consumers_store_in_the_database_unless_dev_sqlite_is_chosen(
    case: str, manifests: dict[str, list]
) -> None:
    dev = bool(positive_cases()[case].get("devOnly", {}).get("ephemeralSqliteStores"))
    deployments = consumer_deployments(manifests[case])
    assert deployments
    for doc in deployments:
        name = doc["metadata"]["name"]
        spec = doc["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = env_of(container)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        database = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        if not dev:
            # A pod without DATABASE_URL does not start, and has nowhere to keep SQLite files.
            assert database.get("optional", False) is False, name
            assert "DATASYNC_STORE_DIR" not in env, name
            assert set(volumes) == {"tmp"} and set(mounts) == {"/tmp"}, name
            continue
        assert database["optional"] is True, name
        store = env["DATASYNC_STORE_DIR"]["value"]
        assert store in mounts and "emptyDir" in volumes[mounts[store]], name
        assert volumes[mounts[store]]["emptyDir"].get("sizeLimit")


@pytest.mark.parametrize("case", CASES)
def test_no_replicas_on_deployments_keda_owns(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    deployments = by_name(docs, "Deployment")
    scaled = of_kind(docs, "ScaledObject")
    consumers = consumer_deployments(docs)
    assert consumers
    if case == "variant-no-keda":
        assert not scaled
        assert all(d["spec"].get("replicas") == 1 for d in consumers)
        return
    assert len(scaled) == len(consumers), "one ScaledObject per consumer Deployment"
    for obj in scaled:
        target = obj["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] in deployments, target
        assert "replicas" not in deployments[target["name"]]["spec"], target["name"]


@pytest.mark.parametrize("case", CASES)
def test_api_replicas_belong_to_the_hpa_when_enabled(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    api = api_deployment(docs)
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    if (
        case in ("variant-no-hpa",)
        or positive_cases()[case].get("api", {}).get("autoscaling", {}).get("enabled") is False
    ):
        assert not hpas and api["spec"]["replicas"] >= 1
        return
    assert len(hpas) == 1 and "replicas" not in api["spec"]
    hpa = hpas[0]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] <= hpa["maxReplicas"]


@pytest.mark.parametrize("case", CASES)
def test_probes_and_resources(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    api = api_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert str(ports["http"]) == env_of(api)["API_PORT"]["value"]
    assert env_of(api)["API_HOST"]["value"] == "0.0.0.0"
    consumers = consumer_deployments(docs)
    assert consumers
    for doc in consumers:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
        assert str(port) == env_of(container)["DATASYNC_HEALTH_PORT"]["value"]
        # alive while the process runs; ready while its store answers (503 and why otherwise)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name


@pytest.mark.parametrize("case", CASES)
def test_consumers_drain_before_they_are_killed(case: str, manifests: dict[str, list]) -> None:
    consumers = consumer_deployments(manifests[case])
    assert consumers
    for doc in consumers:
        spec = doc["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > DRAIN_SECONDS, doc["metadata"]["name"]
        assert not spec["containers"][0].get("lifecycle"), "SIGTERM drains; no preStop sleep"
    if case == "minimal":
        assert {
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for d in consumers
        } == {90}


@pytest.mark.parametrize("case", CASES)
def test_labels(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        missing = [k for k in STANDARD_LABELS if not labels.get(k)]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "datasync"
    for doc in of_kind(docs, "Deployment"):
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template_labels.items()
        assert template_labels["app.kubernetes.io/component"] == component(doc)
    assert component(api_deployment(docs)) == "api"
    for doc in consumer_deployments(docs):
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        destination = args[args.index("--destination") + 1]
        assert component(doc) == f"consumer-{destination}"
        assert doc["metadata"]["name"] == f"{RELEASE}-datasync-consumer-{destination}"


@pytest.mark.parametrize("case", CASES)
def test_queue_url_is_defined_once_per_consumer(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(docs, "ScaledObject")}
    rendered_text = "\n".join(yaml.safe_dump(strip_private(d)) for d in docs)
    consumers = consumer_deployments(docs)
    assert consumers
    for doc in consumers:
        container = doc["spec"]["template"]["spec"]["containers"][0]
        urls = [e for e in container["env"] if e["name"] == "DATASYNC_QUEUE_URL"]
        assert len(urls) == 1 and "value" in urls[0], urls
        url = urls[0]["value"]
        destination = component(doc).removeprefix("consumer-")
        if case in MAIN_CASES and case != "minimal":
            assert url.startswith(("http://", "https://")), url
            # Once for the consumer (KEDA reads it there), once for the API's status page.
            seen = len(re.findall(re.escape(url) + r"(?![\w-])", rendered_text))
            assert seen == 2, f"{url} appears {seen} times"
            status_page = env_of(api_deployment(docs)["spec"]["template"]["spec"]["containers"][0])
            assert status_page[f"DATASYNC_{destination.upper()}_QUEUE_URL"]["value"] == url
        if case == "variant-no-keda":
            continue
        obj = scaled[doc["metadata"]["name"]]
        assert obj["spec"]["scaleTargetRef"]["envSourceContainerName"] == container["name"]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "aws-sqs-queue"
        assert trigger["metadata"]["queueURLFromEnv"] == "DATASYNC_QUEUE_URL"
        assert "queueURL" not in trigger["metadata"]


def scaling_values(case: str, destination: str) -> dict[str, Any]:
    chart, values = load_yaml(CHART / "values.yaml"), positive_cases()[case]
    own = consumer_entries(values if "consumers" in values else chart)[destination]
    defaults = values.get("consumerDefaults", {}).get("scaling", {})
    return chart["consumerDefaults"]["scaling"] | defaults | own.get("scaling", {})


@pytest.mark.parametrize("case", [c for c in CASES if c != "variant-no-keda"])
def test_scaled_objects(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    config = settings_config_map(docs)["data"]
    (auth,) = of_kind(docs, "TriggerAuthentication")
    scaled = of_kind(docs, "ScaledObject")
    assert scaled
    for obj in scaled:
        spec = obj["spec"]
        assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        # What the values ask for, each consumer's own over consumerDefaults over the chart's.
        wanted = scaling_values(case, component(obj).removeprefix("consumer-"))
        assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (
            wanted["pollingInterval"], wanted["cooldownPeriod"],
        )  # fmt: skip
        assert (meta["queueLength"], meta["activationQueueLength"]) == (
            str(wanted["queueLength"]), str(wanted["activationQueueLength"]),
        )  # fmt: skip
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert meta["awsRegion"] == config["AWS_REGION"]
        if "AWS_ENDPOINT_URL" in config:
            assert meta["awsEndpoint"] == config["AWS_ENDPOINT_URL"]
            assert ".svc.cluster.local" in meta["awsEndpoint"], "KEDA runs in another namespace"
        else:
            assert "awsEndpoint" not in meta
    if case == "minimal":
        assert {o["spec"]["minReplicaCount"] for o in scaled} == {0}


def test_trigger_authentication_for_kind_uses_the_secret(manifests: dict[str, list]) -> None:
    docs = manifests[kind_case()]
    (auth,) = of_kind(docs, "TriggerAuthentication")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"awsAccessKeyID", "awsSecretAccessKey"}
    (secret,) = [s for s in of_kind(docs, "Secret") if component(s) == "config"]
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert "podIdentity" not in auth["spec"]


def test_trigger_authentication_for_eks_uses_pod_identity(manifests: dict[str, list]) -> None:
    docs = manifests[eks_case()]
    (auth,) = of_kind(docs, "TriggerAuthentication")
    identity = auth["spec"]["podIdentity"]
    assert identity["provider"] == "aws" and identity["roleArn"].startswith("arn:aws:iam::")
    assert "secretTargetRef" not in auth["spec"]
    assert not of_kind(docs, "Secret"), "the EKS values use an existing Secret"
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert "AWS_ACCESS_KEY_ID" not in env_of(container), "no static keys on EKS"


def test_service_accounts_carry_irsa_roles(manifests: dict[str, list]) -> None:
    docs = manifests[eks_case()]
    accounts = by_name(docs, "ServiceAccount")
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) >= 4
    roles = set()
    for doc in deployments:
        account = accounts[doc["spec"]["template"]["spec"]["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False
        role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role.startswith("arn:aws:iam::")
        roles.add(role)
    assert len(roles) == len(deployments), "each component has its own role"


@pytest.mark.parametrize("case", MAIN_CASES)
def test_settings_and_secrets_wiring(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    config = settings_config_map(docs)
    for key in ("DATASYNC_ENV", "DATASYNC_EVENT_BUS_NAME", "AWS_REGION", "DATASYNC_LOG_LEVEL"):
        assert config["data"][key], key
    assert "DATASYNC_API_KEYS" not in config["data"]
    # The pods' Secret; the migration Job's hook Secret is another.
    secrets = [s for s in of_kind(docs, "Secret") if component(s) == "config"]
    values = positive_cases()[case]
    (external,) = [e for e in of_kind(docs, "ExternalSecret") if component(e) == "config"] or [None]
    if external:
        secret_name = external["spec"]["target"]["name"]
    else:
        secret_name = (
            secrets[0]["metadata"]["name"] if secrets else values["secrets"]["existingSecret"]
        )
    api = api_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(api)["DATASYNC_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret_name and ref["key"] == "DATASYNC_API_KEYS"
    assert api["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    for doc in consumer_deployments(docs):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        env = env_of(container)
        assert "DATASYNC_API_KEYS" not in env, "consumers do not get the API keys"
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == secret_name
        # The analytics hash key is the Lambdas' (Terraform gives it to them): no consumer,
        # the analytics one included, has a use for it.
        assert "DATASYNC_ANALYTICS_HASH_KEY" not in env, component(doc)
    if secrets:
        assert secrets[0]["stringData"]["DATASYNC_API_KEYS"], "an API key is always set"
        assert "DATASYNC_ANALYTICS_HASH_KEY" not in secrets[0]["stringData"]
    table = values.get("config", {}).get("dashboardSessionsTable")
    assert config["data"].get("DATASYNC_DASHBOARD_SESSIONS_TABLE") == table


@pytest.mark.parametrize("case", CASES)
def test_the_api_trusts_the_ingress_as_its_one_proxy(case: str, manifests: dict[str, list]) -> None:
    """Wrong keys are limited per client address: behind the chart's Ingress, the one it names."""
    api_values = positive_cases()[case].get("api", {})
    ingress = api_values.get("ingress", {}).get("enabled", False)
    expected = api_values.get("trustedProxies", 1 if ingress else 0)
    api = api_deployment(manifests[case])["spec"]["template"]["spec"]["containers"][0]
    assert env_of(api)["DATASYNC_API_TRUSTED_PROXIES"]["value"] == str(expected)


@pytest.mark.parametrize("case", CASES)
def test_behind_trusted_proxies_only_they_reach_the_api_port(
    case: str, manifests: dict[str, list]
) -> None:
    """X-Forwarded-For names the client the wrong-key limit counts: with trusted proxies, a pod
    that could reach the API port directly could name any client, so only the proxies (and the
    `helm test` pod) are admitted."""
    docs = manifests[case]
    api = api_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    trusted = int(env_of(api)["DATASYNC_API_TRUSTED_PROXIES"]["value"])
    values = positive_cases()[case].get("networkPolicy", {})
    if values.get("enabled") is False:
        assert trusted == 0
        return
    policy = by_name(docs, "NetworkPolicy")[f"{RELEASE}-datasync-api"]["spec"]
    (api_port,) = [r for r in policy["ingress"] if {"protocol": "TCP", "port": 8080} in r["ports"]]
    test_pod = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "datasync",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "test",
            }
        }
    }
    if trusted:
        assert api_port["from"] == [*values["ingressControllerFrom"], test_pod]
    elif values.get("apiIngressFrom"):
        assert api_port["from"] == [*values["apiIngressFrom"], test_pod]
    else:
        assert "from" not in api_port  # no proxy trusted: the peer is the client, whoever it is
    if case == eks_case():
        assert trusted == 1 and api_port["from"][0]["ipBlock"]["cidr"] != "10.0.0.0/16"


@pytest.mark.parametrize("case", MAIN_CASES)
def test_network_policies(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    policies = by_name(docs, "NetworkPolicy")
    api = policies[f"{RELEASE}-datasync-api"]["spec"]
    consumers = policies[f"{RELEASE}-datasync-consumers"]["spec"]
    assert set(api["policyTypes"]) == set(consumers["policyTypes"]) == {"Ingress", "Egress"}
    values = positive_cases()[case].get("networkPolicy", {})
    scrapers = values.get("metricsIngressFrom", [])
    api_ingress, *api_metrics_ingress = api["ingress"]
    assert api_ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    # The metrics ports admit the scraper alone, and no one when none is named (the kubelet's
    # probes come from the node, which a NetworkPolicy always admits).
    if scrapers:
        assert [r["ports"] for r in api_metrics_ingress] == [[{"protocol": "TCP", "port": 9102}]]
        (consumer_ingress,) = consumers["ingress"]
        assert consumer_ingress["ports"] == [{"protocol": "TCP", "port": 9100}]
        assert consumer_ingress["from"] == scrapers
    else:
        assert api_metrics_ingress == [] and consumers["ingress"] == []
    selected = consumers["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(selected) == sorted(component(d) for d in consumer_deployments(docs))

    def egress_ports(spec: dict[str, Any]) -> set[int]:
        return {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}

    aws_ports = set(values.get("awsEgress", {}).get("ports", [443]))
    agent = {80} if values.get("podIdentityAgent", {}).get("enabled", True) else set()
    assert egress_ports(api) == {53} | aws_ports | agent
    postgres = {values["postgres"]["port"]} if values.get("postgres", {}).get("enabled") else set()
    assert egress_ports(consumers) == {53} | aws_ports | agent | postgres
    if agent:
        cidrs = [
            p["ipBlock"]["cidr"]
            for rule in api["egress"]
            for p in rule.get("to", [])
            if {"protocol": "TCP", "port": 80} in rule["ports"]
        ]
        assert cidrs == ["169.254.170.23/32"], "only the EKS Pod Identity agent on port 80"


def test_helm_test_pod_calls_the_api_healthz(manifests: dict[str, list]) -> None:
    docs = manifests["minimal"]
    (pod,) = of_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["__template"].endswith("templates/tests/test-api-healthz.yaml")
    (service,) = [s for s in of_kind(docs, "Service") if component(s) == "api"]
    command = pod["spec"]["containers"][0]["command"]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/healthz"
    assert command[-1] == url
    assert pod["spec"]["restartPolicy"] == "Never"


def test_prometheus_is_off_by_default(manifests: dict[str, list]) -> None:
    docs = manifests["minimal"]
    assert not of_kind(docs, "ServiceMonitor")
    for doc in consumer_deployments(docs):
        assert "prometheus.io/scrape" not in (
            doc["spec"]["template"]["metadata"].get("annotations") or {}
        )
    eks = manifests[eks_case()]
    monitors = of_kind(eks, "ServiceMonitor")
    assert {component(m) for m in monitors} == {"api"} | {
        component(d) for d in consumer_deployments(eks)
    }
    for monitor in monitors:
        assert (
            monitor["spec"]["endpoints"][0]
            == {"port": "metrics", "path": "/metrics", "interval": "30s"}
            and monitor["apiVersion"] == "monitoring.coreos.com/v1"
        )
    kind = manifests[kind_case()]
    for doc in consumer_deployments(kind):
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9100"
    api_annotations = api_deployment(kind)["spec"]["template"]["metadata"]["annotations"]
    assert api_annotations["prometheus.io/port"] == "9102"
    assert api_annotations["prometheus.io/path"] == "/metrics"


def test_a_consumer_entry_can_be_switched_off(manifests: dict[str, list]) -> None:
    docs = manifests["variant-one-consumer-off"]
    assert [component(d) for d in consumer_deployments(docs)] == ["consumer-crm"]
    assert len(of_kind(docs, "ScaledObject")) == 1


def test_notes_warn_about_missing_queue_urls(render_results: dict[str, dict]) -> None:
    notes = render_results["minimal"]["manifests"]["datasync/templates/NOTES.txt"]
    assert notes.count("queueUrl is empty") == 3
    kind_notes = render_results[kind_case()]["manifests"]["datasync/templates/NOTES.txt"]
    assert "queueUrl is empty" not in kind_notes
