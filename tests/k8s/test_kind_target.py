"""Behaviour of tests/e2e/kind_target.py against a fake cluster (there is no kind cluster here).

The fake APIs answer with the kubernetes client's own models, and each call they receive is first
given to the real generated API method, which validates the arguments (pydantic) and builds the
request; the fake catches that request instead of sending it. So a wrong method name, argument or
type fails here as it would against a cluster, and tests can assert the exact request.

The port-forward fake hands out the client's real PortForward sockets (one end of a socketpair
per port) without the websocket: a thread plays the pod on the other end. kind_target's own
PortForward class and its pumps therefore run for real, over real local TCP connections.
"""

from __future__ import annotations

import base64
import functools
import inspect
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import ws_client

from tests.e2e import kind_target as kt
from tests.e2e import test_kind_scaling as scaling
from tests.k8s.k8s_support import REPO

pytestmark = pytest.mark.k8s

NS, DEV_NS = kt.NAMESPACE, kt.DEV_NAMESPACE
RELEASE_LABELS = {"app.kubernetes.io/instance": kt.RELEASE}
RELEASE_SELECTOR = f"app.kubernetes.io/instance={kt.RELEASE}"
SOCKET_TIMEOUT = 5.0  # bounds every socket wait; a passing test needs milliseconds
REAL_LOAD_KUBE_CONFIG = config.load_kube_config  # before any test replaces it

Request = tuple[str, str, dict[str, str]]  # (HTTP method, path, query) as the real client builds it
PodPort = Callable[[socket.socket], None]  # what listens on a pod's port, given the connection


# --- The real client's request, built but not sent ------------------------------------------------


class _RequestBuilt(Exception):  # noqa: N818 (not an error: it carries the request out)
    pass


class _RequestCatcher(client.ApiClient):
    """An ApiClient that stops where the request would go out: by then the generated method has
    validated its arguments."""

    def param_serialize(self, method, resource_path, path_params=None, query_params=None, **_):
        path = resource_path.format(**(path_params or {}))
        raise _RequestBuilt(method, path, dict(query_params or []))


def built_request(api: type, method: str, *args: Any, **kwargs: Any) -> Request:
    with pytest.raises(_RequestBuilt) as built:
        getattr(api(api_client=_RequestCatcher()), method)(*args, **kwargs)
    return built.value.args


# --- A fake cluster, as the kubernetes client's models ------------------------------------------


def _matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    """Equality-based label selectors ("a=b,c=d"), the only kind kind_target uses."""
    terms = [term.split("=", 1) for term in selector.split(",")] if selector else []
    return all((labels or {}).get(key) == value for key, value in terms)


@dataclass
class FakeCluster:
    deployments: list[client.V1Deployment] = field(default_factory=list)
    scaled_objects: list[dict[str, Any]] = field(default_factory=list)
    pods: list[client.V1Pod] = field(default_factory=list)
    secrets: list[client.V1Secret] = field(default_factory=list)
    # (namespace, pod, port) -> what listens there; a pod port not listed refuses connections.
    pod_ports: dict[tuple[str, str, int], PodPort] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    kube_context: str | None = None

    def select(self, objects: list[Any], namespace: str, selector: str | None) -> list[Any]:
        return [
            o
            for o in objects
            if o.metadata.namespace == namespace and _matches(o.metadata.labels, selector)
        ]

    def load_kube_config(self, *args: Any, **kwargs: Any) -> None:
        arguments = inspect.signature(REAL_LOAD_KUBE_CONFIG).bind(*args, **kwargs).arguments
        self.kube_context = arguments.get("context")


class _FakeApi:
    real: type

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def _receive(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.cluster.requests.append(built_request(self.real, method, *args, **kwargs))


class FakeAppsApi(_FakeApi):
    real = client.AppsV1Api

    def list_namespaced_deployment(self, namespace: str, **kwargs: Any) -> Any:
        self._receive("list_namespaced_deployment", namespace, **kwargs)
        found = self.cluster.select(
            self.cluster.deployments, namespace, kwargs.get("label_selector")
        )
        return client.V1DeploymentList(items=found)

    def read_namespaced_deployment(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self._receive("read_namespaced_deployment", name, namespace, **kwargs)
        for found in self.cluster.select(self.cluster.deployments, namespace, None):
            if found.metadata.name == name:
                return found
        raise ApiException(status=404, reason="Not Found")


class FakeCustomObjectsApi(_FakeApi):
    real = client.CustomObjectsApi

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._receive("list_namespaced_custom_object", *args, **kwargs)
        selector = kwargs.get("label_selector")
        items = [
            o for o in self.cluster.scaled_objects if _matches(o["metadata"]["labels"], selector)
        ]
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObjectList", "items": items}


class FakeCoreApi(_FakeApi):
    real = client.CoreV1Api

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> Any:
        self._receive("list_namespaced_pod", namespace, **kwargs)
        found = self.cluster.select(self.cluster.pods, namespace, kwargs.get("label_selector"))
        return client.V1PodList(items=found)

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self._receive("read_namespaced_secret", name, namespace, **kwargs)
        for secret in self.cluster.select(self.cluster.secrets, namespace, None):
            if secret.metadata.name == name:
                return secret
        raise ApiException(status=404, reason="Not Found")

    def connect_get_namespaced_pod_portforward(self, name: str, namespace: str, **kwargs: Any):
        self._receive("connect_get_namespaced_pod_portforward", name, namespace, **kwargs)
        if not any(
            p.metadata.name == name for p in self.cluster.select(self.cluster.pods, namespace, None)
        ):
            # What ws_client.portforward_call raises when the websocket handshake is refused.
            raise ApiException(status=0, reason="Handshake status 404 Not Found")
        ports = [int(port) for port in kwargs["ports"].split(",")]  # as portforward_call parses
        return ForwardWithoutWebsocket(
            {port: self.cluster.pod_ports.get((namespace, name, port)) for port in ports}
        )


def fake_portforward(api_method: Any, *args: Any, **kwargs: Any) -> Any:
    """kubernetes.stream.portforward without the websocket transport: it calls the API method
    the same way, forcing _preload_content=False."""
    return api_method(*args, **kwargs, _preload_content=False)


class ForwardWithoutWebsocket(ws_client.PortForward):
    """The client's PortForward (socket(), error(), close() and a socketpair per port) minus the
    websocket proxy thread (so no super().__init__): a thread here plays the pod instead."""

    def __init__(self, ports: dict[int, PodPort | None]) -> None:
        self.local_ports = {}
        for index, (number, listener) in enumerate(ports.items()):
            port = self._Port(index, number)
            self.local_ports[number] = port
            threading.Thread(target=_play_pod, args=(port, listener), daemon=True).start()


def _play_pod(port: Any, listener: PodPort | None) -> None:
    # Closing port.python is what the real proxy does when the pod side ends: the application's
    # socket then reads EOF.
    with port.python:
        if listener is None:
            # Kubernetes reports a refused pod port on the port's error channel.
            port.error = f"failed to connect to localhost:{port.port_number}: connection refused"
            return
        port.python.settimeout(SOCKET_TIMEOUT)
        listener(port.python)


# --- What listens in the fake pods --------------------------------------------------------------


def _read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data and (chunk := sock.recv(65536)):
        data += chunk
    return data


def http_api(sock: socket.socket) -> None:
    """The API container: answers one HTTP request, /healthz with 200, then closes."""
    path = _read_until(sock, b"\r\n\r\n").split(b" ")[1]
    status = b"200 OK" if path == b"/healthz" else b"404 Not Found"
    sock.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def shouting_echo(sock: socket.socket) -> None:
    """Sends one line back upper-cased, so the reply provably went through the pod."""
    sock.sendall(_read_until(sock, b"\n").upper())


def exchange(port: int, data: bytes) -> bytes:
    """Sends data to 127.0.0.1:port and returns everything received until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(data)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        return reply


# --- Builders ---------------------------------------------------------------------------------


def deployment(
    name: str,
    wanted: int,
    generation: int = 2,
    status: client.V1DeploymentStatus | None = None,
) -> client.V1Deployment:
    rolled_out = client.V1DeploymentStatus(
        observed_generation=generation,
        replicas=wanted,
        updated_replicas=wanted,
        available_replicas=wanted,
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(
            name=name, namespace=NS, generation=generation, labels=RELEASE_LABELS
        ),
        spec=client.V1DeploymentSpec(
            replicas=wanted, selector=client.V1LabelSelector(), template=client.V1PodTemplateSpec()
        ),
        status=status or rolled_out,
    )


def scaled_object(name: str, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": NS, "labels": RELEASE_LABELS}}
    if status is not None:
        obj["status"] = status
    return obj


def keda_status(ready: str) -> dict[str, Any]:
    return {
        "conditions": [{"type": "Ready", "status": ready}, {"type": "Active", "status": "False"}]
    }


def pod(
    name: str,
    namespace: str = NS,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    ready: bool = True,
    terminating: bool = False,
) -> client.V1Pod:
    conditions = None  # a Pending pod may have none yet
    if phase == "Running":
        conditions = [
            client.V1PodCondition(type="PodScheduled", status="True"),
            client.V1PodCondition(type="Ready", status=str(ready)),
        ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=labels,
            deletion_timestamp=datetime.now(UTC) if terminating else None,
        ),
        status=client.V1PodStatus(phase=phase, conditions=conditions),
    )


def secret(name: str, namespace: str, **values: str) -> client.V1Secret:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=data)


class FakeClock:
    """Replaces kind_target's time module: sleep() advances monotonic() at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(kt, "time", fake)
    return fake


# --- _rolled_out --------------------------------------------------------------------------------


ROLLOUTS = {
    "rolled out": (
        2,
        client.V1DeploymentStatus(
            observed_generation=3, replicas=2, updated_replicas=2, available_replicas=2
        ),
        True,
    ),
    # KEDA scaled the consumer to zero: the replica counts are absent from the status.
    "scaled to zero by KEDA": (0, client.V1DeploymentStatus(observed_generation=3), True),
    "controller has not seen the new spec": (
        2,
        client.V1DeploymentStatus(
            observed_generation=2, replicas=2, updated_replicas=2, available_replicas=2
        ),
        False,
    ),
    "controller has not seen it at all": (2, client.V1DeploymentStatus(), False),
    "old pod still surging": (
        2,
        client.V1DeploymentStatus(
            observed_generation=3, replicas=3, updated_replicas=2, available_replicas=2
        ),
        False,
    ),
    "new pod not yet updated": (
        2,
        client.V1DeploymentStatus(
            observed_generation=3, replicas=2, updated_replicas=1, available_replicas=2
        ),
        False,
    ),
    "new pod not yet available": (
        2,
        client.V1DeploymentStatus(
            observed_generation=3, replicas=2, updated_replicas=2, available_replicas=1
        ),
        False,
    ),
}


@pytest.mark.parametrize(("wanted", "status", "expected"), ROLLOUTS.values(), ids=ROLLOUTS)
def test_rolled_out(wanted: int, status: client.V1DeploymentStatus, expected: bool) -> None:
    cluster = FakeCluster(deployments=[deployment("datasync-api", wanted, 3, status)])
    assert kt._rolled_out(FakeAppsApi(cluster), "datasync-api") is expected
    assert cluster.requests == [
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/datasync-api", {})
    ]


# --- _scaled_objects_ready ----------------------------------------------------------------------


SCALED_OBJECTS = {
    "none yet": ([], False),
    "one not Ready": ([keda_status("True"), keda_status("False")], False),
    "one Ready unknown": ([keda_status("True"), keda_status("Unknown")], False),
    "one without status": ([keda_status("True"), None], False),
    "one without a Ready condition": ([keda_status("True"), {"conditions": []}], False),
    "all Ready": ([keda_status("True"), keda_status("True")], True),
}


@pytest.mark.parametrize(("statuses", "expected"), SCALED_OBJECTS.values(), ids=SCALED_OBJECTS)
def test_scaled_objects_ready(statuses: list[dict[str, Any] | None], expected: bool) -> None:
    objects = [scaled_object(f"so-{i}", status) for i, status in enumerate(statuses)]
    cluster = FakeCluster(scaled_objects=objects)
    assert kt._scaled_objects_ready(FakeCustomObjectsApi(cluster)) is expected
    path = f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects"
    assert cluster.requests == [("GET", path, {"labelSelector": RELEASE_SELECTOR})]


# --- _ready_pod ---------------------------------------------------------------------------------


def test_ready_pod_picks_the_running_ready_one() -> None:
    labels = {"app": "api"}
    cluster = FakeCluster(
        pods=[
            pod("pending", labels=labels, phase="Pending"),
            pod("not-ready", labels=labels, ready=False),
            pod("old-replica-terminating", labels=labels, terminating=True),
            pod("ready-elsewhere", labels={"app": "other"}),
            pod("ready", labels=labels),
        ]
    )
    assert kt._ready_pod(FakeCoreApi(cluster), NS, "app=api") == "ready"
    assert cluster.requests == [
        ("GET", f"/api/v1/namespaces/{NS}/pods", {"labelSelector": "app=api"})
    ]


def test_ready_pod_is_empty_when_none_is_ready() -> None:
    cluster = FakeCluster(
        pods=[
            pod("pending", phase="Pending"),
            pod("not-ready", ready=False),
            pod("going", terminating=True),
        ]
    )
    assert kt._ready_pod(FakeCoreApi(cluster), NS, "") == ""


# --- _secret_value ------------------------------------------------------------------------------


def test_secret_value_is_decoded() -> None:
    cluster = FakeCluster(secrets=[secret("creds", DEV_NS, PASSWORD="pä$$:wörd/?")])
    assert kt._secret_value(FakeCoreApi(cluster), DEV_NS, "creds", "PASSWORD") == "pä$$:wörd/?"
    assert cluster.requests == [("GET", f"/api/v1/namespaces/{DEV_NS}/secrets/creds", {})]


# --- _wait --------------------------------------------------------------------------------------


def test_wait_returns_the_first_truthy_value(clock: FakeClock) -> None:
    results = iter([None, "", "pod-a", "pod-b"])
    assert kt._wait("a pod", lambda: next(results), timeout=60) == "pod-a"
    assert clock.sleeps == [kt.POLL_SECONDS, kt.POLL_SECONDS]


def test_wait_gives_up_at_the_deadline_naming_what_it_waited_for(clock: FakeClock) -> None:
    checks: list[float] = []
    with pytest.raises(TimeoutError, match=r"after 10s waiting for the thing to happen"):
        kt._wait("the thing to happen", lambda: checks.append(clock.now), timeout=10)
    # Polled every POLL_SECONDS from the start until the deadline, then no more.
    assert checks == [i * kt.POLL_SECONDS for i in range(len(checks))]
    assert checks[-1] < 10 <= clock.now


# --- PortForward --------------------------------------------------------------------------------


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[kt.PortForward]]:
    """kind_target keeps its forwards for the whole process; here each test closes them."""
    opened: list[kt.PortForward] = []
    monkeypatch.setattr(kt, "_FORWARDS", opened)
    monkeypatch.setattr(kt, "portforward", fake_portforward)
    yield opened
    for forward in opened:
        forward.close()


@pytest.fixture
def echo_pod() -> FakeCluster:
    return FakeCluster(pods=[pod("echo")], pod_ports={(NS, "echo", 9000): shouting_echo})


def open_forward(
    cluster: FakeCluster, forwards: list[kt.PortForward], pod_name: str, port: int
) -> kt.PortForward:
    forward = kt.PortForward(FakeCoreApi(cluster), NS, pod_name, port)
    forwards.append(forward)
    return forward


def test_port_forward_carries_bytes_both_ways(echo_pod: FakeCluster, forwards: list) -> None:
    forward = open_forward(echo_pod, forwards, "echo", 9000)
    line = b"hello pod " + b"x" * 300_000 + b"\n"  # several pump chunks each way
    assert exchange(forward.local_port, line) == line.upper()
    path = f"/api/v1/namespaces/{NS}/pods/echo/portforward"
    assert echo_pod.requests == [("GET", path, {"ports": "9000"})]


def test_port_forward_opens_one_forward_per_connection(
    echo_pod: FakeCluster, forwards: list
) -> None:
    forward = open_forward(echo_pod, forwards, "echo", 9000)
    assert exchange(forward.local_port, b"one\n") == b"ONE\n"
    assert exchange(forward.local_port, b"two\n") == b"TWO\n"
    assert len(echo_pod.requests) == 2


def test_port_forward_close_stops_listening(echo_pod: FakeCluster, forwards: list) -> None:
    forward = open_forward(echo_pod, forwards, "echo", 9000)
    assert exchange(forward.local_port, b"hi\n") == b"HI\n"
    forward.close()
    with pytest.raises(ConnectionRefusedError):
        exchange(forward.local_port, b"after close\n")
    accepting = [t for t in threading.enumerate() if t.name == "pf-echo-9000"]
    for thread in accepting:
        thread.join(SOCKET_TIMEOUT)
    assert not any(t.is_alive() for t in accepting)


def test_port_forward_to_a_closed_pod_port_closes_the_connection_and_says_why(
    echo_pod: FakeCluster, forwards: list, capsys: pytest.CaptureFixture[str]
) -> None:
    forward = open_forward(echo_pod, forwards, "echo", 9999)  # nothing listens on 9999
    assert exchange(forward.local_port, b"anyone?\n") == b""
    printed = ""
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while "connection refused" not in printed and time.monotonic() < deadline:
        time.sleep(0.01)
        printed += capsys.readouterr().err
    assert "port-forward to echo:9999: failed to connect" in printed


def test_port_forward_to_a_gone_pod_closes_the_connection(
    echo_pod: FakeCluster, forwards: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forward's thread fails with the ApiException: the reason must reach threading's
    # excepthook (printed), and the client must not be left waiting for a reply.
    failures: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    forward = open_forward(echo_pod, forwards, "replaced-pod", 9000)
    # Nothing sent: unread data would turn the close into a reset, which is fine but racy.
    assert exchange(forward.local_port, b"") == b""
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [type(f.exc_value) for f in failures] == [ApiException]


# --- kind_target() ------------------------------------------------------------------------------


API_POD, DB_POD = "datasync-api-5f7c9d-x2k4q", "postgres-0"
API_LABELS = {**RELEASE_LABELS, "app.kubernetes.io/component": "api"}


def deployed_release() -> FakeCluster:
    prefix = kt.fullname()
    return FakeCluster(
        deployments=[
            deployment(f"{prefix}-api", 2),
            deployment(
                f"{prefix}-consumer-crm", 0, status=client.V1DeploymentStatus(observed_generation=2)
            ),
        ],
        scaled_objects=[scaled_object(f"{prefix}-consumer-crm", keda_status("True"))],
        pods=[
            pod(API_POD, labels=API_LABELS),
            pod(DB_POD, namespace=DEV_NS, labels={"app.kubernetes.io/name": "postgres"}),
        ],
        secrets=[
            secret(f"{prefix}-secrets", NS, DATASYNC_API_KEYS=" key-one , key-two"),
            secret(
                "postgres",
                DEV_NS,
                POSTGRES_USER="datasync",
                POSTGRES_PASSWORD="s3cret",
                POSTGRES_DB="datasync",
            ),
        ],
        pod_ports={(NS, API_POD, 8080): http_api, (DEV_NS, DB_POD, 5432): shouting_echo},
    )


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, forwards: list) -> Callable[[FakeCluster], None]:
    """Points kind_target's kubernetes client at a fake cluster."""

    def point_at(cluster: FakeCluster) -> None:
        monkeypatch.setattr(kt.config, "load_kube_config", cluster.load_kube_config)
        monkeypatch.setattr(kt.client, "CoreV1Api", functools.partial(FakeCoreApi, cluster))
        monkeypatch.setattr(kt.client, "AppsV1Api", functools.partial(FakeAppsApi, cluster))
        monkeypatch.setattr(
            kt.client, "CustomObjectsApi", functools.partial(FakeCustomObjectsApi, cluster)
        )

    monkeypatch.setattr(kt, "POLL_SECONDS", 0.01)
    # A broken forward then fails in seconds rather than after the real (minutes-long) timeouts.
    real_wait = kt._wait
    monkeypatch.setattr(
        kt, "_wait", lambda what, check, timeout=5: real_wait(what, check, min(timeout, 5))
    )
    return point_at


def test_kind_target_returns_how_to_reach_the_release(on_cluster: Callable) -> None:
    cluster = deployed_release()
    on_cluster(cluster)
    target = kt.kind_target()

    assert cluster.kube_context == kt.CONTEXT
    assert target["api_key"] == "key-one"
    api = urlsplit(target["api_url"])
    assert (api.scheme, api.hostname, api.path) == ("http", "127.0.0.1", "")
    with urllib.request.urlopen(target["api_url"] + "/healthz", timeout=SOCKET_TIMEOUT) as reply:
        assert reply.status == 200  # answered by the API pod, through the port-forward
    db = urlsplit(target["database_url"])
    assert (db.scheme, db.username, db.password) == ("postgresql", "datasync", "s3cret")
    assert (db.hostname, db.path) == ("127.0.0.1", "/datasync")
    assert db.port and exchange(db.port, b"select 1\n") == b"SELECT 1\n"

    forwarded = {(path, q["ports"]) for _, path, q in cluster.requests if "ports" in q}
    assert forwarded == {
        (f"/api/v1/namespaces/{NS}/pods/{API_POD}/portforward", "8080"),
        (f"/api/v1/namespaces/{DEV_NS}/pods/{DB_POD}/portforward", "5432"),
    }


def without(cluster: FakeCluster, deployment_suffix: str) -> FakeCluster:
    cluster.deployments = [
        d for d in cluster.deployments if not d.metadata.name.endswith(deployment_suffix)
    ]
    return cluster


@pytest.mark.parametrize("missing", ["-api", "-consumer-crm"])
def test_kind_target_says_how_to_deploy_a_missing_release(
    on_cluster: Callable, missing: str
) -> None:
    on_cluster(without(deployed_release(), missing))
    with pytest.raises(RuntimeError, match=r"run `make kind-up` and `skaffold run -p kind` first"):
        kt.kind_target()


def test_kind_target_waits_for_every_deployment_to_roll_out(
    on_cluster: Callable, clock: FakeClock
) -> None:
    cluster = deployed_release()
    cluster.deployments[1].status.observed_generation = 1  # the consumer's new spec is not seen yet
    on_cluster(cluster)
    with pytest.raises(TimeoutError, match=rf"deployment/{kt.fullname()}-consumer-crm to roll out"):
        kt.kind_target()


def test_kind_target_waits_for_the_scaled_objects(on_cluster: Callable, clock: FakeClock) -> None:
    cluster = deployed_release()
    cluster.scaled_objects[0]["status"] = keda_status("False")
    on_cluster(cluster)
    with pytest.raises(TimeoutError, match=r"the KEDA ScaledObjects to be Ready"):
        kt.kind_target()


# --- tests/e2e/test_kind_scaling.py, which uses kind_target -------------------------------------


def test_kind_scaling_is_skipped_unless_the_target_is_kind() -> None:
    # `make e2e` with the default (local) target selects the e2e marker: it must not reach for kind.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_kind_scaling.py", "-m", "e2e", "-rs"]
        + ["-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env={**os.environ, "E2E_TARGET": "local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "runs against kind" in proc.stdout, proc.stdout


def test_kind_scaling_waits_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(scaling, "time", clock)
    with pytest.raises(pytest.fail.Exception, match=r"timed out after 30s: KEDA to scale"):
        scaling._wait_for("KEDA to scale", lambda: False, 30)
    assert 30 <= clock.now < 30 + scaling.POLL_SECONDS
