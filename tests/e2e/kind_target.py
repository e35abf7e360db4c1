"""The e2e target on kind: the stack from `make kind-up && skaffold run -p kind`.

    from kind_target import kind_target
    target = kind_target()  # {"api_url": ..., "api_key": ..., "database_url": ...}

What it does, with the `kubernetes` Python client (kube context kind-datasync):
- waits (bounded) until the API Deployment and every consumer Deployment have rolled out, and
  until every KEDA ScaledObject reports Ready (the consumers may rightly sit at 0 replicas);
- opens local port-forwards: to a ready API pod (api_url = http://127.0.0.1:<port>) and to the
  dev PostgreSQL pod (database_url = postgresql://...@127.0.0.1:<port>/datasync);
- reads the API key from the chart's Secret and the database credentials from deploy/kind's Secret.

Limits: a port-forward goes to one pod, not to the Service (no load balancing; if that pod is
replaced, call kind_target() again); each TCP connection is a new websocket to the API server, so
throughput is modest (fine for functional tests, not for load tests); the forwards live as long
as this Python process. Names follow the release "datasync" in namespace "datasync"; override with
DATASYNC_KIND_CONTEXT, DATASYNC_KIND_NAMESPACE, DATASYNC_KIND_RELEASE.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

from kubernetes import client, config
from kubernetes.stream import portforward

CONTEXT = os.environ.get("DATASYNC_KIND_CONTEXT", "kind-datasync")
NAMESPACE = os.environ.get("DATASYNC_KIND_NAMESPACE", "datasync")
RELEASE = os.environ.get("DATASYNC_KIND_RELEASE", "datasync")
DEV_NAMESPACE = "datasync-dev"  # deploy/kind/postgres.yaml
ROLLOUT_TIMEOUT = 300.0
POLL_SECONDS = 2.0

# Port-forwards stay open for the whole test session; keep references so they are not collected.
_FORWARDS: list[PortForward] = []


def fullname(release: str = RELEASE) -> str:
    """The chart's resource-name prefix (charts/datasync/templates/_helpers.tpl)."""
    return release if "datasync" in release else f"{release}-datasync"


class PortForward:
    """127.0.0.1:<local_port> -> <pod>:<port>, one websocket port-forward per TCP connection."""

    def __init__(self, api: client.CoreV1Api, namespace: str, pod: str, port: int) -> None:
        self._api, self._namespace, self._pod, self._port = api, namespace, pod, port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.local_port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name=f"pf-{pod}-{port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # `with conn`: when the forward cannot be opened (pod gone: ApiException), the client
        # sees its connection closed instead of waiting forever for a reply.
        with conn:
            forward = portforward(
                self._api.connect_get_namespaced_pod_portforward,
                self._pod,
                self._namespace,
                ports=str(self._port),
            )
            remote = forward.socket(self._port)
            remote.setblocking(True)
            pumps = [
                threading.Thread(target=_pump, args=(conn, remote), daemon=True),
                threading.Thread(target=_pump, args=(remote, conn), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join()
            # Kubernetes reports a refused pod port here; the client only saw a closed socket.
            error = forward.error(self._port)
            if error:
                print(f"port-forward to {self._pod}:{self._port}: {error}", file=sys.stderr)
            forward.close()  # closes `remote`, this side of the client's socketpair

    def close(self) -> None:
        # On Linux, close() alone neither wakes the thread blocked in accept() nor stops the
        # socket listening (that accept() still holds it); shutdown() does both.
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _wait(what: str, check: Any, timeout: float = ROLLOUT_TIMEOUT) -> Any:
    """Polls check() until it returns something truthy; bounded by timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _rolled_out(apps: client.AppsV1Api, name: str) -> bool:
    deployment = apps.read_namespaced_deployment(name, NAMESPACE)
    status, wanted = deployment.status, deployment.spec.replicas or 0
    return (
        (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == wanted
        and (status.available_replicas or 0) == wanted
        and (status.replicas or 0) == wanted
    )


def _scaled_objects_ready(custom: client.CustomObjectsApi) -> bool:
    objects = custom.list_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        NAMESPACE,
        "scaledobjects",
        label_selector=f"app.kubernetes.io/instance={RELEASE}",
    )["items"]
    if not objects:
        return False
    for obj in objects:
        conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            return False
    return True


def _ready_pod(core: client.CoreV1Api, namespace: str, selector: str) -> str:
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        conditions = {c.type: c.status for c in (pod.status.conditions or [])}
        # A terminating pod (old replica after a redeploy) can still be Running and Ready.
        terminating = pod.metadata.deletion_timestamp is not None
        if pod.status.phase == "Running" and conditions.get("Ready") == "True" and not terminating:
            return pod.metadata.name
    return ""


def _secret_value(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str:
    data = core.read_namespaced_secret(name, namespace).data or {}
    return base64.b64decode(data[key]).decode()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local forward)
            return response.status == 200
    except OSError:
        return False


def kind_target() -> dict[str, str]:
    """Waits for the deployed stack and returns how to reach it from this machine."""
    config.load_kube_config(context=CONTEXT)
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    custom = client.CustomObjectsApi()
    prefix = fullname()
    selector = f"app.kubernetes.io/instance={RELEASE}"

    deployments = [
        d.metadata.name
        for d in apps.list_namespaced_deployment(NAMESPACE, label_selector=selector).items
    ]
    api_name = f"{prefix}-api"
    if api_name not in deployments or not any(
        d.startswith(f"{prefix}-consumer-") for d in deployments
    ):
        raise RuntimeError(
            f"no datasync release {RELEASE!r} in {NAMESPACE!r} (context {CONTEXT}): "
            "run `make kind-up` and `skaffold run -p kind` first"
        )
    for name in deployments:
        _wait(f"deployment/{name} to roll out", lambda name=name: _rolled_out(apps, name))
    _wait("the KEDA ScaledObjects to be Ready", lambda: _scaled_objects_ready(custom))
    db_pod = _wait(
        "deployment/postgres to roll out",
        lambda: _ready_pod(core, DEV_NAMESPACE, "app.kubernetes.io/name=postgres"),
    )

    api_pod = _wait(
        "a ready API pod",
        lambda: _ready_pod(core, NAMESPACE, f"{selector},app.kubernetes.io/component=api"),
    )
    api_forward = PortForward(core, NAMESPACE, api_pod, 8080)
    db_forward = PortForward(core, DEV_NAMESPACE, db_pod, 5432)
    _FORWARDS.extend([api_forward, db_forward])

    api_url = f"http://127.0.0.1:{api_forward.local_port}"
    _wait(
        "the API's /healthz through the port-forward",
        lambda: _healthy(f"{api_url}/healthz"),
        timeout=60,
    )

    api_keys = _secret_value(core, NAMESPACE, f"{prefix}-secrets", "DATASYNC_API_KEYS")
    user = _secret_value(core, DEV_NAMESPACE, "postgres", "POSTGRES_USER")
    password = _secret_value(core, DEV_NAMESPACE, "postgres", "POSTGRES_PASSWORD")
    database = _secret_value(core, DEV_NAMESPACE, "postgres", "POSTGRES_DB")
    return {
        "api_url": api_url,
        "api_key": api_keys.split(",")[0].strip(),
        "database_url": f"postgresql://{user}:{password}@127.0.0.1:{db_forward.local_port}/{database}",
    }
