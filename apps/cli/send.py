"""`datasync send`: realistic users through the API, at a fixed rate, for demos and benches.

Through the API over HTTP with an API key, never straight onto the bus, so what it sends is
checked, published and logged as a client's requests are. Mostly registrations, then
updates, opt-ins and opt-outs, and a few deletes, each of a user this run registered (and the
API accepted). Emails are on reserved domains (RFC 2606), so no real person gets mail.

Open loop: request i is due at start + i / rate whatever earlier answers took, and its latency
counts from when it was due, so a slow API shows up as latency, not as a slower send.
``send_users`` is the reusable part (``make bench`` or a test may call it).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.cli import common
from datasync.core import exit_codes
from datasync.settings import ConfigError

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Radia", "Hedy")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Perlman")
COUNTRIES = ("GB", "FR", "DE", "US", "NL", "ES", "IT", "SE", "PL", "IE")
DOMAINS = ("example.com", "example.org", "example.net")  # reserved: RFC 2606
# What a sign-up product sees: mostly new users, some profile changes, consent changes, deletes.
MIX = {"register": 0.7, "update": 0.12, "opt_in": 0.06, "opt_out": 0.06, "delete": 0.06}

EXAMPLES = """\
examples:
  datasync send --count 100                    # 100 requests at 20/s to the local API
  datasync send --count 1000 --rate 100 --out /tmp/users.txt
  datasync send --count 50 --api-url http://127.0.0.1:8080 --json

Exit 1 when a request was refused or failed (the summary says which statuses).
"""


@dataclass
class Request:
    operation: str
    method: str
    path: str
    body: dict[str, Any] | None
    user_id: str | None = None  # None for a registration: the API assigns it


@dataclass
class Result:
    operation: str
    status: int | str
    latency: float
    user_id: str | None = None
    event_id: str | None = None


@dataclass
class SendSummary:
    results: list[Result] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.status == 202)

    @property
    def user_ids(self) -> list[str]:
        return sorted({r.user_id for r in self.results if r.status == 202 and r.user_id})

    def as_dict(self) -> dict[str, Any]:
        latencies = sorted(r.latency for r in self.results)
        return {
            "sent": len(self.results),
            "accepted": self.accepted,
            "refused": dict(Counter(str(r.status) for r in self.results if r.status != 202)),
            "operations": dict(Counter(r.operation for r in self.results)),
            "latency_ms": {
                "p50": _ms(_quantile(latencies, 0.5)),
                "p99": _ms(_quantile(latencies, 0.99)),
            },
            "users": len(self.user_ids),
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class Users:
    """The users this run registered, and the next request to send (thread-safe)."""

    def __init__(self, seed: int | None):
        self.rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
        self.run = uuid.uuid4().hex[:8]
        self.live: list[str] = []
        self.count = 0
        self.lock = threading.Lock()

    def next_request(self) -> Request:
        with self.lock:
            self.count += 1
            operation = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
            if operation == "register" or not self.live:
                return Request("register", "POST", "/v1/users", self._profile())
            user_id = self.rng.choice(self.live)
            if operation == "delete":
                self.live.remove(user_id)  # nothing more is sent for an erased user
                return Request("delete", "DELETE", f"/v1/users/{user_id}", None, user_id)
            body: dict[str, Any]
            if operation == "update":
                body = {"country": self.rng.choice(COUNTRIES)}
            elif operation == "opt_in":  # opting in needs the contact details (README, API)
                body = {"marketing_opt_in": True, **self._contact()}
            else:
                body = {"marketing_opt_in": False}
            return Request(operation, "PATCH", f"/v1/users/{user_id}", body, user_id)

    def registered(self, user_id: str) -> None:
        with self.lock:
            self.live.append(user_id)

    def _contact(self) -> dict[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        email = f"{first}.{last}.{self.run}.{self.count}@{self.rng.choice(DOMAINS)}".lower()
        return {"email": email, "name": f"{first} {last}"}

    def _profile(self) -> dict[str, Any]:
        profile: dict[str, Any] = {**self._contact(), "marketing_opt_in": self.rng.random() < 0.5}
        if self.rng.random() < 0.9:
            profile["country"] = self.rng.choice(COUNTRIES)
        return profile


def send_one(
    api_url: str, api_key: str, request: Request, correlation_id: str, timeout: float = 10
) -> tuple[int | str, dict[str, Any]]:
    data = None if request.body is None else json.dumps(request.body).encode()
    url = api_url + request.path
    http = urllib.request.Request(url, data=data, method=request.method)  # noqa: S310 - http(s) API
    http.add_header("X-API-Key", api_key)
    http.add_header("X-Correlation-ID", correlation_id)
    if data is not None:
        http.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:  # noqa: S310 - our API URL
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}
    except (OSError, ValueError) as error:
        return f"error:{type(error).__name__}", {}


def send_users(
    api_url: str,
    api_key: str,
    *,
    count: int,
    rate: float,
    concurrency: int = 16,
    seed: int | None = None,
    on_result: Callable[[Result], None] = lambda result: None,
) -> SendSummary:
    """Send ``count`` requests at ``rate`` per second, at most ``concurrency`` at once."""
    users, summary, lock = Users(seed), SendSummary(), threading.Lock()
    start = time.monotonic()

    def send(i: int, due: float) -> None:
        request = users.next_request()
        status, body = send_one(api_url, api_key, request, f"send-{users.run}-{i}")
        user_id = body.get("user_id") or request.user_id
        if status == 202 and request.operation == "register" and user_id:
            users.registered(user_id)
        result = Result(
            request.operation, status, time.monotonic() - due, user_id, body.get("event_id")
        )
        with lock:
            summary.results.append(result)
            on_result(result)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") as pool:
        for i in range(count):
            due = start + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(send, i, due)
    return summary


def register(commands: Any) -> None:
    send = commands.add_parser(
        "send", help="send realistic users through the API (demos, load)", epilog=EXAMPLES
    )
    send.add_argument("--count", type=int, required=True, help="requests to send")
    send.add_argument("--rate", type=float, default=20, help="requests per second (default 20)")
    send.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    send.add_argument("--api-url", help="default: DATASYNC_API_URL, else the local API")
    send.add_argument("--seed", type=int, help="the same users and operations each time")
    send.add_argument("--out", type=Path, help="write the accepted users' ids here, one a line")
    send.add_argument("--json", action="store_true", help="the summary as JSON")
    send.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    if args.count < 1 or args.rate <= 0 or args.concurrency < 1:
        raise ConfigError("--count, --rate and --concurrency must be positive")
    settings = common.settings()
    local_api = f"http://127.0.0.1:{settings.api_port}"
    api_url = (args.api_url or settings.api_url or local_api).rstrip("/")
    with common.progress(f"send to {api_url}", args.count) as bar:
        refused = Counter[str]()

        def on_result(result: Result) -> None:
            if result.status != 202:
                refused[str(result.status)] += 1
            bar.update(1, refused=sum(refused.values()))

        summary = send_users(
            api_url,
            settings.api_key_list()[0],
            count=args.count,
            rate=args.rate,
            concurrency=args.concurrency,
            seed=args.seed,
            on_result=on_result,
        )
    if args.out:
        args.out.write_text("".join(f"{user_id}\n" for user_id in summary.user_ids))
    report = summary.as_dict()
    if args.json:
        common.print_json(report)
    else:
        latency = report["latency_ms"]
        refusals = ", ".join(f"{n} × {s}" for s, n in sorted(report["refused"].items()))
        print(
            f"sent {report['sent']}: {report['accepted']} accepted"
            f"{'; refused ' + refusals if refusals else ''}; latency p50 {latency['p50']} ms, "
            f"p99 {latency['p99']} ms; {report['users']} users"
            f"{f' (ids in {args.out})' if args.out else ''}"
        )
    return exit_codes.OK if report["accepted"] == report["sent"] else exit_codes.FAILED
