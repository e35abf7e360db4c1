"""The images and the chart's pods, rehearsed on the host against the session's real stack.

No Docker or cluster here (see tests/rehearsal.py for what is carried out and the one liberty
taken). The chart is rendered with Helm's engine from charts/datasync/ci/kind-values.yaml plus
what `make kind-up` adds (deploy/kind/kind_values.py), pointed at this session's emulator. Then:

- each image's builder stage runs from its lock file alone, and its virtualenv is the size
  the Dockerfile states;
- the API pod's container passes its probes and publishes through the real bus: the event
  reaches the session's stores;
- the migration Job's container (the chart's pre-install hook, from the consumer image, as the
  schema's owner) migrates the database that a consumer pod, before it, refused to start on
  (exit 5, saying what to run); a second run changes nothing;
- a consumer pod's container, on a queue of its own and as a database role that may only read and
  write rows, applies a record to PostgreSQL (the DATABASE_URL from the chart's Secret),
  dead-letters a poison message with its reason, and exits 0 on SIGTERM within
  terminationGracePeriodSeconds;
- neither writes anywhere but its emptyDirs (they run as the pod's user in a root-owned WORKDIR
  when the tests run as root).
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
import yaml

from datasync.core.stores import open_store
from tests.builders import record
from tests.k8s.k8s_support import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    helm_tool,
    load_kind_values,
    of_kind,
    parse_manifests,
)
from tests.pipeline import Pipeline, wait_until
from tests.rehearsal import (
    REPO,
    BuiltImage,
    ContainerProcess,
    build_image,
    start_pod_container,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

RELEASE = "datasync"  # skaffold's release name
API = f"{RELEASE}-api"  # the chart's API Deployment and Service
IMAGES = {"api": REPO / "apps/api/Dockerfile", "consumers": REPO / "apps/consumers/Dockerfile"}
STARTUP_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def host_root():
    """A root for the rehearsal the pods' user can traverse (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="datasync-rehearsal-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def images(host_root: Path) -> dict[str, BuiltImage]:
    built = {}
    for name, dockerfile in IMAGES.items():
        root = host_root / name
        root.mkdir()
        built[name] = build_image(dockerfile, root)
    return built


@pytest.fixture(scope="module")
def consumer_queue(pipeline: Pipeline):
    """A queue (with its DLQ) for the rehearsed consumer alone: the session's consumers read
    the real ones, and a message they took would never reach the rehearsed pod."""
    queues = pipeline.create_queue_with_dlq(
        f"rehearsal-{uuid.uuid4().hex[:8]}", max_receive_count=5
    )
    yield queues
    for url in queues.values():
        pipeline.aws("sqs").delete_queue(QueueUrl=url)


@pytest.fixture(scope="module")
def databases(postgres_url: str) -> dict[str, str]:
    """A schema, the URL of its owner (the migration Job's) and of a role that may only read and
    write the rows of the tables the owner creates there (the consumers')."""
    suffix = uuid.uuid4().hex[:8]
    schema, consumer = f"rehearsal_{suffix}", f"rehearsal_consumer_{suffix}"
    owner = urlsplit(postgres_url).username
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE ROLE {consumer} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {consumer}")
        conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {consumer}"
        )
    options = f"?options=-csearch_path%3D{schema}"
    return {
        "owner": postgres_url + options,
        "consumer": postgres_url.replace(f"//{owner}@", f"//{consumer}@") + options,
    }


@pytest.fixture(scope="module")
def consumer_database(databases: dict[str, str]) -> str:
    return databases["consumer"]


@pytest.fixture(scope="module")
def rendered(pipeline: Pipeline, consumer_queue: dict[str, str], databases: dict[str, str]):
    """The chart as skaffold's kind profile deploys it, pointed at this session's emulator, with
    a database role of its own for the migration Job."""
    values = yaml.safe_load((CHART / "ci/kind-values.yaml").read_text())
    added = load_kind_values().kind_values(pipeline.env, endpoint=pipeline.env["AWS_ENDPOINT_URL"])
    values["config"].update(added["config"])
    values["secrets"].update(
        added.get("secrets", {}),
        databaseUrl=databases["consumer"],
        migrationDatabaseUrl=databases["owner"],
    )
    values["consumers"] = [{"destination": "crm", "queueUrl": consumer_queue["queue"]}]
    answer = helm_tool(
        "render",
        {
            "chart": str(CHART),
            "release": RELEASE,
            "namespace": NAMESPACE,
            "kube_version": f"v{KUBE_VERSION}",
            "cases": {"rehearsal": {"values": values, "lint": False}},
        },
    )["rehearsal"]
    assert answer["ok"], answer["error"]
    docs = parse_manifests(answer["manifests"])
    return {
        "deployments": {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")},
        "jobs": {d["metadata"]["name"]: d for d in of_kind(docs, "Job")},
        "pods": {d["metadata"]["name"]: d for d in of_kind(docs, "Pod")},
        "services": {d["metadata"]["name"]: d for d in of_kind(docs, "Service")},
        "config_maps": {d["metadata"]["name"]: d["data"] for d in of_kind(docs, "ConfigMap")},
        "secrets": {d["metadata"]["name"]: d["stringData"] for d in of_kind(docs, "Secret")},
    }


def _start(rendered: dict[str, Any], image: BuiltImage, deployment: str, extra_args=None):
    pod = rendered["deployments"][deployment]["spec"]["template"]["spec"]
    container = start_pod_container(
        image, pod, rendered["config_maps"], rendered["secrets"], extra_args
    )
    return pod, container


def _run_migration_job(rendered: dict[str, Any], image: BuiltImage) -> str:
    """The chart's pre-install hook Job, run to its end as Helm waits for it; its output."""
    (job,) = rendered["jobs"].values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = start_pod_container(
        image, job["spec"]["template"]["spec"], rendered["config_maps"], rendered["secrets"]
    )
    code = container.process.wait(job["spec"]["activeDeadlineSeconds"])
    assert code == 0, f"the migration Job failed ({code}):\n{container.output()[-3000:]}"
    return container.output()


@pytest.fixture(scope="module")
def migrated(rendered: dict[str, Any], images: dict[str, BuiltImage]) -> None:
    """What Helm does before any pod of a release starts: the migration Job."""
    _run_migration_job(rendered, images["consumers"])


def _wait_ready(pod: dict[str, Any], container: ContainerProcess) -> None:
    spec = pod["containers"][0]

    def probes_pass() -> bool:
        if container.process.poll() is not None:  # fail at once, not at the deadline
            pytest.fail(f"{container.name} exited:\n{container.output()[-3000:]}")
        return all(container.probe(spec[p]) == 200 for p in ("livenessProbe", "readinessProbe"))

    # pytest.fail is no AssertionError: wait_until does not swallow it.
    wait_until(probes_pass, timeout=STARTUP_TIMEOUT, what=f"{container.name}'s probes")


def _stop_within_grace(pod: dict[str, Any], container: ContainerProcess) -> None:
    grace = pod["terminationGracePeriodSeconds"]
    code = container.stop(grace)
    assert code == 0, f"exit {code} on SIGTERM (grace {grace}s):\n{container.output()[-3000:]}"


def _nothing_written_outside_volumes(image: BuiltImage, container: ContainerProcess) -> None:
    assert not any(container.workdir.iterdir()), "wrote into the WORKDIR"
    written = [p for p in image.venv.rglob("*") if p.lstat().st_mtime >= container.started_at]
    assert not written, f"wrote into the image's virtualenv: {written[:3]}"


def _helm_test_passes(rendered: dict[str, Any], image: BuiltImage, api: ContainerProcess) -> None:
    """`helm test`: the chart's test pod, run from the API image, reaches the API's Service."""
    (test_pod,) = rendered["pods"].values()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = rendered["services"][API]
    address = f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    host_address = f"127.0.0.1:{api.ports[str(service['spec']['ports'][0]['targetPort'])]}"
    test = start_pod_container(
        image, test_pod["spec"], rendered["config_maps"], rendered["secrets"],
        services={address: host_address},
    )  # fmt: skip
    assert test.process.wait(30) == 0, test.output()
    assert test.output().strip().endswith("/healthz 200"), test.output()


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_builds_from_its_lock_file_and_is_the_size_it_states(
    images: dict[str, BuiltImage], name: str
) -> None:
    image = images[name]
    entrypoint = image.dockerfile.entrypoint()[0]
    assert (image.venv / "bin" / entrypoint).is_file(), f"{entrypoint} is not in the venv"
    stated, measured = image.dockerfile.expected_venv_mb(), image.venv_mb()
    print(f"\n{name}: virtualenv {measured:.0f} MB (the Dockerfile states ~{stated} MB)")
    assert 0.8 * stated <= measured <= 1.2 * stated, (
        f"{IMAGES[name]} states a ~{stated} MB virtualenv; the rehearsal measured {measured:.0f} MB"
    )


def test_api_pod_passes_its_probes_and_publishes_to_the_bus(
    pipeline: Pipeline, rendered: dict[str, Any], images: dict[str, BuiltImage]
) -> None:
    pod, api = _start(rendered, images["api"], API)
    try:
        _wait_ready(pod, api)
        api_key = api.env["DATASYNC_API_KEYS"].split(",")[0]
        through_pod = Pipeline(api.url("http"), api_key, pipeline.env)
        assert through_pod.call("POST", "/v1/users", {"email": "x"}).status == 422
        user = through_pod.create_user(email="pod@example.com", name="Pod Rehearsal")
        applied = wait_until(
            lambda: pipeline.get("crm", user["user_id"]), timeout=60, what="the event in crm"
        )
        assert applied["email"] == "pod@example.com"
        _helm_test_passes(rendered, images["api"], api)
    finally:
        _stop_within_grace(pod, api)
    _nothing_written_outside_volumes(images["api"], api)


def test_the_migration_job_migrates_what_the_consumer_pods_only_check(
    rendered: dict[str, Any], images: dict[str, BuiltImage]
) -> None:
    consumer = f"{RELEASE}-consumer-crm"
    env = {e["name"]: e for e in _pod(rendered, consumer)["containers"][0]["env"]}
    assert env["DATASYNC_STORE_SCHEMA"]["value"] == "check"
    # Before the Job: the consumer pod refuses to start and says what to run.
    _, early = _start(rendered, images["consumers"], consumer, ["--health-host", "127.0.0.1"])
    assert early.process.wait(STARTUP_TIMEOUT) == 5, early.output()[-3000:]
    assert "crm store's schema is at version 0" in early.output()
    assert "run `datasync-migrate`" in early.output()
    first = _run_migration_job(rendered, images["consumers"])
    assert "crm: version 0 -> 1" in first, first
    again = _run_migration_job(rendered, images["consumers"])
    assert again.count("up to date at version 1") == 3, again


def _pod(rendered: dict[str, Any], deployment: str) -> dict[str, Any]:
    return rendered["deployments"][deployment]["spec"]["template"]["spec"]


def test_consumer_pod_applies_dead_letters_and_drains_on_sigterm(
    pipeline: Pipeline,
    rendered: dict[str, Any],
    images: dict[str, BuiltImage],
    consumer_queue: dict[str, str],
    consumer_database: str,
    migrated: None,
) -> None:
    # The container listens on all of its own interfaces; on the host, loopback only.
    pod, consumer = _start(
        rendered,
        images["consumers"],
        f"{RELEASE}-consumer-crm",
        extra_args=["--health-host", "127.0.0.1"],
    )
    try:
        _wait_ready(pod, consumer)
        sqs = pipeline.aws("sqs")
        good = record(key=f"pod-{uuid.uuid4().hex[:8]}", name="Pod Consumer")
        sqs.send_message(QueueUrl=consumer_queue["queue"], MessageBody=good.model_dump_json())
        sqs.send_message(QueueUrl=consumer_queue["queue"], MessageBody="not a record")

        store = open_store("crm", database_url=consumer_database, store_dir=None)
        try:
            applied = wait_until(lambda: store.get(good.key), timeout=60, what="the record in PG")
        finally:
            store.close()
        assert applied["name"] == "Pod Consumer"
        dead = wait_until(
            lambda: sqs.receive_message(
                QueueUrl=consumer_queue["dlq"], MessageAttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages"),
            timeout=60,
            what="the poison message in the DLQ",
        )
        assert dead[0]["Body"] == "not a record"
        assert dead[0]["MessageAttributes"]["failure_reason"]["StringValue"]
        with urllib.request.urlopen(consumer.url("metrics", "/metrics"), timeout=5) as resp:  # noqa: S310
            metrics = resp.read().decode()
        assert 'datasync_consumer_records_total{destination="crm",outcome="applied"} 1' in metrics
    finally:
        _stop_within_grace(pod, consumer)
    _nothing_written_outside_volumes(images["consumers"], consumer)
    # With a database the pod gets no store dir or volume: nowhere to fall back to SQLite.
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}
    assert "DATASYNC_STORE_DIR" not in {e["name"] for e in pod["containers"][0]["env"]}


def test_the_emulator_answers_at_the_address_kind_pods_use(pipeline: Pipeline) -> None:
    """On kind, pods (and KEDA) reach the host's emulator as aws-emulator.datasync-dev...:4566,
    with queue URLs rewritten by deploy/kind/kind_values.py: the emulator must serve requests
    addressed to that name and hand out URLs in it (the consumer finds its DLQ through them)."""
    kind_values = load_kind_values()
    in_cluster_host = urlsplit(kind_values.IN_CLUSTER_ENDPOINT).netloc
    sqs = boto3.client(
        "sqs",
        region_name=pipeline.env["AWS_REGION"],
        endpoint_url=pipeline.env["AWS_ENDPOINT_URL"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )

    def as_seen_from_the_cluster(request: Any, **_: Any) -> None:
        request.headers["Host"] = in_cluster_host

    sqs.meta.events.register("before-send.sqs.*", as_seen_from_the_cluster)
    host_url = pipeline.queue_url("crm")
    pod_url = kind_values.in_cluster_url(host_url)
    assert urlsplit(pod_url).netloc == in_cluster_host
    arn = sqs.get_queue_attributes(QueueUrl=pod_url, AttributeNames=["QueueArn"])["Attributes"]
    assert arn["QueueArn"].endswith(":" + host_url.rsplit("/", 1)[1])
    queue_name = pipeline.dlq_url("crm").rsplit("/", 1)[1]
    assert sqs.get_queue_url(QueueName=queue_name)["QueueUrl"] == kind_values.in_cluster_url(
        pipeline.dlq_url("crm")
    )
