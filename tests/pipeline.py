"""A handle on a running pipeline (test-started or `make run`), used by integration and e2e.

It talks to the pipeline only the way a user would: HTTP to the API, the SQS/EventBridge
APIs of the emulator, and reading the destination stores.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3

from datasync.core.stores import open_store
from datasync.core.transforms import pseudonym
from datasync.local_layout import free_port  # noqa: F401 - the tests take it from here

T = TypeVar("T")


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Pipeline:
    api_url: str
    api_key: str
    env: dict[str, str]  # the apps' settings: endpoint, queue URLs, store location
    _clients: dict[str, Any] = field(default_factory=dict)

    # -- API -----------------------------------------------------------------------------
    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("X-API-Key", self.api_key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return Response(
                    response.status, json.loads(response.read() or b"null"), dict(response.headers)
                )
        except urllib.error.HTTPError as error:
            return Response(error.code, json.loads(error.read() or b"null"), dict(error.headers))

    def create_user(self, **profile: Any) -> dict[str, Any]:
        response = self.call("POST", "/v1/users", profile)
        assert response.status == 202, response.body
        return response.body

    # -- AWS side --------------------------------------------------------------------------
    def aws(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.session.Session(
                aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY"),
            ).client(
                service,
                region_name=self.env["AWS_REGION"],
                endpoint_url=self.env.get("AWS_ENDPOINT_URL"),
            )
        return self._clients[service]

    def create_queue_with_dlq(
        self, name: str, max_receive_count: int, **attributes: str
    ) -> dict[str, str]:
        """A queue of a test's own (and its DLQ, by redrive policy): {"queue": url, "dlq": url}."""
        sqs = self.aws("sqs")
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        attributes["RedrivePolicy"] = json.dumps(redrive)
        queue = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return {"queue": queue, "dlq": dlq}

    def queue_url(self, destination: str) -> str:
        return self.env[f"DATASYNC_{destination.upper()}_QUEUE_URL"]

    def dlq_url(self, destination: str) -> str:
        return self.env[f"DATASYNC_{destination.upper()}_DLQ_URL"]

    def dlq_messages(self, destination: str) -> list[dict[str, Any]]:
        """Peek (visibility 0) at up to 10 DLQ messages with their attributes."""
        return self.aws("sqs").receive_message(
            QueueUrl=self.dlq_url(destination), MaxNumberOfMessages=10, VisibilityTimeout=0,
            MessageAttributeNames=["All"], WaitTimeSeconds=1,
        ).get("Messages", [])  # fmt: skip

    # -- stores ----------------------------------------------------------------------------
    def get(self, destination: str, user_id: str) -> dict[str, Any] | None:
        key = user_id
        if destination == "analytics":
            key = pseudonym(user_id, self.env["DATASYNC_ANALYTICS_HASH_KEY"].encode())
        store = open_store(
            destination,  # type: ignore[arg-type]
            database_url=self.env.get("DATABASE_URL"),
            store_dir=Path(self.env["DATASYNC_STORE_DIR"])
            if "DATASYNC_STORE_DIR" in self.env
            else None,
        )
        try:
            return store.get(key)
        finally:
            store.close()


class ReadinessWatch:
    """Polls the consumers' ``/readyz`` (destination -> health port) in a thread, and keeps
    every answer that differs from the one before: (time.time(), status, body)."""

    def __init__(self, ports: dict[str, int], interval: float = 0.25):
        self.ports, self.interval = ports, interval
        self.seen: dict[str, list[tuple[float, int, str]]] = {d: [] for d in ports}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="readiness", daemon=True)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for destination, port in self.ports.items():
                status, body = readiness(port)
                answers = self.seen[destination]
                if not answers or answers[-1][1:] != (status, body):
                    answers.append((time.time(), status, body))
            self._stop.wait(self.interval)

    def unready(self, destination: str, since: float) -> list[str]:
        """The reasons ``destination`` gave for being unready since ``since``."""
        return [
            body for at, status, body in self.seen[destination] if at >= since and status != 200
        ]

    def ready_now(self, destination: str) -> bool:
        return readiness(self.ports[destination])[0] == 200


def readiness(port: int) -> tuple[int, str]:
    """(status, body) of a consumer's /readyz; (0, why) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:  # noqa: S310
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()
    except OSError as exc:
        return 0, type(exc).__name__


def wait_until(
    check: Callable[[], T], timeout: float = 60, interval: float = 0.3, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def supervise(stack: Any) -> None:
    """One round of what `make run`'s loop does: restart the apps that exited (main thread)."""
    for app in stack.apps.values():
        app.check()


def consumer_outcomes(logs_dir: Path, destination: str, event_id: str) -> list[str]:
    """What a consumer's batch lines say it did with one event (applied, duplicate, ...), in
    the order it did it."""
    outcomes = []
    for line in (logs_dir / f"consumer-{destination}.log").read_text().splitlines():
        try:
            events = json.loads(line).get("events") or {}
        except ValueError:
            continue
        outcomes += [
            o for o, traced in events.items() if any(t.startswith(event_id) for t in traced)
        ]
    return outcomes
