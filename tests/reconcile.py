"""Acknowledged means applied: a workload, a client that keeps a ledger of 202s, a reconciler.

The delivery-guarantee tests and `make soak` share this harness. It proves the promise the way
the most trusted systems of this kind do (Kafka's system tests: consumed ⊇ acknowledged;
Outpost's load test: published = completed + missing, or the run is void), one step further
because our stores are idempotent and order-safe:

- ``Workload``: deterministic for a seed. Each user gets a registration, then updates (renames,
  country and attribute changes, opt-ins with contact details, opt-outs, email changes), and some
  users are erased at the end.
- ``LoadClient``: sends each user's writes in order, the next only after the previous one was
  acknowledged (so "the last acknowledged write" is well defined), many users at once, at a fixed
  offered rate if asked. It retries 503, 429 and connection errors with the same Idempotency-Key,
  as a well-behaved client does, so each write ends acknowledged or counted as given up.
- ``reconcile``: compares the ledger with every store and reports, per destination:
  lost        acknowledged, never applied
  doubled     applied more than once (the consumers' logged outcomes: a redelivery must be a
              "duplicate", never a second "applied"/"unchanged")
  unexpected  applied, never acknowledged
  stale       the final state differs from the last acknowledged write
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import urllib3

from datasync.contract import DESTINATIONS
from datasync.contract.consent import CONTACT_FIELDS, SUBSCRIBED, enforce, marketing_fields
from datasync.core.retry import backoff_delay
from datasync.core.transforms import pseudonym

COUNTRIES = ("GB", "DE", "FR", "IE", "NL", "SE", "PT", "US", "CA", "JP")
PROFILE_FIELDS = ("email", "name", "marketing_opt_in", "country", "attributes")
RETRY_STATUSES = frozenset({429, 503})


# -- the workload ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    """One request of the workload. ``path`` has ``{user_id}`` for writes after the registration."""

    user: int
    seq: int
    method: str
    path: str
    body: dict[str, Any] | None
    idempotency_key: str

    @property
    def event_type(self) -> str:
        return {"POST": "UserCreated", "PATCH": "UserUpdated", "DELETE": "UserDeleted"}[self.method]


@dataclass(frozen=True)
class Workload:
    """Per user, the writes to send in order. ``run_id`` keeps keys and emails unique per run."""

    users: list[list[Write]]
    run_id: str

    @property
    def size(self) -> int:
        return sum(len(writes) for writes in self.users)

    @classmethod
    def generate(
        cls,
        events: int,
        *,
        seed: int = 7,
        writes_per_user: int = 5,
        delete_share: float = 0.15,
        run_id: str | None = None,
    ) -> Workload:
        """About ``events`` writes: registrations, updates, opt-ins/outs and some erasures."""
        rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
        run_id = run_id or uuid.uuid4().hex[:10]
        users: list[list[Write]] = []
        total = 0
        while total < events:
            index = len(users)
            length = max(1, min(events - total, rng.randint(1, 2 * writes_per_user - 1)))
            users.append(_user_writes(rng, run_id, index, length, delete_share))
            total += len(users[-1])
        return cls(users, run_id)


def _user_writes(rng: random.Random, run_id: str, user: int, length: int, delete_share: float):
    email = f"soak-{run_id}-{user}@example.com"
    opted_in = rng.random() < 0.5
    profile: dict[str, Any] = {
        "email": email,
        "name": f"User {user}",
        "marketing_opt_in": opted_in,
        "country": rng.choice(COUNTRIES),
        "attributes": {"plan": rng.choice(("free", "pro"))},
    }
    bodies: list[tuple[str, dict[str, Any] | None]] = [("POST", profile)]
    erase = length > 1 and rng.random() < delete_share
    for step in range(length - 1 - int(erase)):
        bodies.append(("PATCH", _change(rng, user, step, email)))
    if erase:
        bodies.append(("DELETE", None))
    return [
        Write(
            user=user,
            seq=seq,
            method=method,
            path="/v1/users" if method == "POST" else "/v1/users/{user_id}",
            body=body,
            idempotency_key=f"soak-{run_id}-{user}-{seq}",
        )
        for seq, (method, body) in enumerate(bodies)
    ]


def _change(rng: random.Random, user: int, step: int, email: str) -> dict[str, Any]:
    kind = rng.choice(("rename", "country", "attributes", "opt_in", "opt_out", "email"))
    if kind == "rename":
        return {"name": f"User {user} v{step}"}
    if kind == "country":
        return {"country": rng.choice((*COUNTRIES, None))}
    if kind == "attributes":
        return {"attributes": rng.choice(({"plan": "pro", "seats": str(step)}, None))}
    if kind == "opt_in":
        return {"marketing_opt_in": True, "email": email, "name": f"User {user} in{step}"}
    if kind == "opt_out":
        return {"marketing_opt_in": False}
    return {"email": f"soak-{step}-{email}"}


# -- the client and its ledger ---------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    write: Write
    user_id: str
    event_id: str
    attempts: int
    latency_s: float  # first send to 202, retries included
    acked_at: float = 0.0  # wall-clock time of the 202 (time.time())


@dataclass
class Ledger:
    acks: list[Ack] = field(default_factory=list)
    gave_up: list[Write] = field(default_factory=list)
    rejected: list[tuple[Write, int, str]] = field(default_factory=list)  # a 4xx the API meant
    server_errors: Counter[int] = field(default_factory=Counter)  # 5xx other than 503
    retries: Counter[str] = field(default_factory=Counter)  # why requests were retried
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kwargs: Any) -> None:
        with self._lock:
            for name, value in kwargs.items():
                if name in ("retry", "server_error"):
                    (self.retries if name == "retry" else self.server_errors)[value] += 1
                else:
                    getattr(self, name).append(value)

    def by_user(self) -> dict[str, list[Ack]]:
        """Each user's acknowledged writes, in the order they were sent (= acknowledged)."""
        users: dict[str, list[Ack]] = defaultdict(list)
        for ack in sorted(self.acks, key=lambda a: (a.write.user, a.write.seq)):
            users[ack.user_id].append(ack)
        return users


@dataclass
class LoadClient:
    api_url: str
    api_key: str
    concurrency: int = 16
    rate: float | None = None  # writes per second offered; None: as fast as answers come
    give_up_after: float = 300.0  # per write, retries included
    timeout: float = 10.0
    correlation_prefix: str = "soak"

    def run(
        self,
        workload: Workload,
        *,
        stop: threading.Event | None = None,
        progress: Callable[[Ledger], None] | None = None,
    ) -> Ledger:
        """Send the whole workload; returns when every write is acknowledged or given up."""
        ledger = Ledger()
        stop = stop or threading.Event()
        http = urllib3.PoolManager(maxsize=self.concurrency, retries=False)
        pending = list(reversed(range(len(workload.users))))
        take_lock = threading.Lock()
        pacer = _Pacer(self.rate)

        def next_user() -> int | None:
            with take_lock:
                return pending.pop() if pending else None

        def worker() -> None:
            while not stop.is_set() and (user := next_user()) is not None:
                self._send_user(http, workload.users[user], ledger, pacer, stop)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=1.0)
            if progress:
                progress(ledger)
        http.clear()
        return ledger

    def _send_user(self, http, writes, ledger: Ledger, pacer: _Pacer, stop) -> None:
        user_id: str | None = None
        for write in writes:
            pacer.wait()
            ack = self._send(http, write, user_id, ledger, stop)
            if ack is None:
                return  # later writes of this user depend on this one: stop the user here
            user_id = ack.user_id
            ledger.add(acks=ack)

    def _send(self, http, write: Write, user_id: str | None, ledger: Ledger, stop) -> Ack | None:
        path = write.path.format(user_id=user_id)
        headers = {
            "X-API-Key": self.api_key,
            "Idempotency-Key": write.idempotency_key,
            "X-Correlation-ID": f"{self.correlation_prefix}-{write.idempotency_key}"[-128:],
        }
        body = None
        if write.body is not None:
            body = json.dumps(write.body).encode()
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        for attempt in range(1, 10_000):
            try:
                response = http.request(
                    write.method, self.api_url + path, body=body, headers=headers,
                    timeout=urllib3.Timeout(total=self.timeout),
                )  # fmt: skip
            except urllib3.exceptions.HTTPError as exc:
                ledger.add(retry=type(exc).__name__)
                wait = backoff_delay(attempt, base=0.1, cap=2.0)
            else:
                if response.status == 202:
                    answer = json.loads(response.data)
                    return Ack(
                        write,
                        answer["user_id"],
                        answer["event_id"],
                        attempt,
                        time.monotonic() - started,
                        time.time(),
                    )
                if response.status not in RETRY_STATUSES and response.status < 500:
                    ledger.add(rejected=(write, response.status, response.data.decode()[:300]))
                    return None
                if response.status in RETRY_STATUSES:
                    ledger.add(retry=str(response.status))
                else:
                    ledger.add(server_error=response.status)
                retry_after = response.headers.get("Retry-After", "")
                wait = min(2.0, float(retry_after)) if retry_after.isdigit() else 0.2
            if stop.is_set() or time.monotonic() - started + wait > self.give_up_after:
                ledger.add(gave_up=write)
                return None
            time.sleep(wait)
        ledger.add(gave_up=write)
        return None


def run_in_background(client: LoadClient, workload: Workload):
    """``client.run(workload)`` in a thread: (the thread, {"ledger": ...} once it is done)."""
    result: dict[str, Ledger] = {}
    thread = threading.Thread(target=lambda: result.update(ledger=client.run(workload)))
    thread.start()
    return thread, result


class _Pacer:
    """Open-loop pacing: the n-th send is due at start + n / rate, whatever the answers took."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.sent = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.rate:
            return
        with self.lock:
            due = self.started + self.sent / self.rate
            self.sent += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# -- what the stores should hold ---------------------------------------------------------------
@dataclass
class ExpectedUser:
    user_id: str
    events: list[str]  # every acknowledged event id: crm and analytics apply each of them
    crm: dict[str, Any] | None  # None: erased
    marketing: dict[str, Any] | None  # None: erased
    marketing_events: list[str]  # the acknowledged events that give marketing a record


def expected_users(ledger: Ledger) -> dict[str, ExpectedUser]:
    """Fold each user's acknowledged writes, in order, the way the contract defines them."""
    expected = {}
    for user_id, acks in ledger.by_user().items():
        crm: dict[str, Any] | None = {}
        marketing: dict[str, Any] | None = {}
        marketing_events = []
        for ack in acks:
            if ack.write.method == "DELETE":
                crm = marketing = None
                marketing_events.append(ack.event_id)
                break
            changes = dict(ack.write.body or {})
            if ack.write.method == "POST":
                changes = {name: changes.get(name) for name in PROFILE_FIELDS}
            crm.update(changes)  # type: ignore[union-attr]
            learned = marketing_fields(changes)
            if learned is not None:
                marketing = enforce({**marketing, **learned})  # type: ignore[dict-item]
                marketing_events.append(ack.event_id)
        expected[user_id] = ExpectedUser(
            user_id, [a.event_id for a in acks], crm, marketing, marketing_events
        )
    return expected


# -- reading the stores ----------------------------------------------------------------------
@dataclass
class StoreReader:
    """Reads the destination stores directly (SQLite files or PostgreSQL), as an auditor would."""

    store_dir: Path | None = None
    database_url: str | None = None
    analytics_hash_key: bytes = b""

    def _query(self, destination: str, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                return conn.execute(sql.replace("?", "%s"), tuple(params)).fetchall()
        assert self.store_dir is not None
        path = self.store_dir / f"{destination}.sqlite3"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def applied_event_ids(self, destination: str, since: str | None = None) -> set[str]:
        table = f"datasync_{destination}_applied_events"
        if since is None:
            return {r[0] for r in self._query(destination, f"SELECT event_id FROM {table}")}  # noqa: S608
        rows = self._query(
            destination,
            f"SELECT event_id FROM {table} WHERE applied_at >= ?",  # noqa: S608
            (since,),
        )
        return {r[0] for r in rows}

    def applied_times(self, destination: str) -> dict[str, float]:
        """event id -> when the store applied it (epoch seconds, the consumers' clock)."""
        table = f"datasync_{destination}_applied_events"
        rows = self._query(destination, f"SELECT event_id, applied_at FROM {table}")  # noqa: S608
        return {r[0]: datetime.fromisoformat(str(r[1])).timestamp() for r in rows}

    def states(self, destination: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """key -> {"fields", "versions", "deleted"} for the keys that have a row."""
        found = {}
        table = f"datasync_{destination}_records"
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                destination,
                f"SELECT key, fields, versions, deleted_version FROM {table}"  # noqa: S608
                f" WHERE key IN ({marks})",
                chunk,
            )
            for key, fields, versions, deleted in rows:
                found[key] = {
                    "fields": json.loads(fields),
                    "versions": json.loads(versions),
                    "deleted": deleted is not None,
                }
        return found

    def analytics_events(self, user_ids: list[str]) -> dict[str, list[str]]:
        """user id -> the event ids in the analytics log under that user's pseudonym."""
        events: dict[str, list[str]] = defaultdict(list)
        for user_id, event_id, _ in self._analytics_rows(user_ids):
            events[user_id].append(event_id)
        return events

    def occurred_at(self, user_ids: list[str]) -> dict[str, str]:
        """event id -> when it occurred (the event's time, as the archive knows it too)."""
        return {event_id: at for _, event_id, at in self._analytics_rows(user_ids)}

    def _analytics_rows(self, user_ids: list[str]) -> Iterable[tuple[str, str, str]]:
        by_subject = {pseudonym(u, self.analytics_hash_key): u for u in user_ids}
        subjects = list(by_subject)
        for start in range(0, len(subjects), 500):
            chunk = subjects[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "analytics",
                "SELECT subject, event_id, fields FROM datasync_analytics_log"
                f" WHERE subject IN ({marks})",  # noqa: S608
                chunk,
            )
            for subject, event_id, fields in rows:
                yield by_subject[subject], event_id, json.loads(fields).get("occurred_at", "")


def logged_outcomes(logs_dir: Path | None) -> dict[str, Counter[str]]:
    """destination -> event id -> how often a consumer applied it (any outcome but duplicate)."""
    outcomes: dict[str, Counter[str]] = {d: Counter() for d in DESTINATIONS}
    if logs_dir is None:
        return outcomes
    for destination in DESTINATIONS:
        for log in sorted(logs_dir.glob(f"consumer-{destination}*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if '"events"' not in line:
                    continue
                try:
                    events = json.loads(line).get("events")
                except ValueError:
                    continue
                if not isinstance(events, dict):
                    continue
                for outcome, traces in events.items():
                    if outcome != "duplicate":
                        outcomes[destination].update(t.split("/", 1)[0] for t in traces)
    return outcomes


# -- the verdict -----------------------------------------------------------------------------
CLASSES = ("lost", "doubled", "unexpected", "stale")


@dataclass
class Report:
    acknowledged: int
    users: int
    gave_up: int
    rejected: int
    server_errors: int
    found: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: {c: {d: [] for d in DESTINATIONS} for c in CLASSES}
    )

    def count(self, what: str) -> int:
        return sum(len(ids) for ids in self.found[what].values())

    @property
    def ok(self) -> bool:
        return all(self.count(c) == 0 for c in CLASSES) and self.void_reason is None

    @property
    def void_reason(self) -> str | None:
        """A run whose client gave up, was refused or saw 5xx proves nothing about delivery."""
        if self.gave_up or self.rejected or self.server_errors:
            return (
                f"client gave up on {self.gave_up}, had {self.rejected} rejected and "
                f"{self.server_errors} server errors (other than 503)"
            )
        return None

    def lines(self) -> list[str]:
        out = [f"acknowledged  {self.acknowledged} writes of {self.users} users"]
        for what in CLASSES:
            per = ", ".join(f"{d} {len(ids)}" for d, ids in self.found[what].items())
            examples = [i for ids in self.found[what].values() for i in ids][:3]
            hint = f"  e.g. {', '.join(examples)}" if examples else ""
            out.append(f"{what:<12}  {self.count(what)}  ({per}){hint}")
        if self.void_reason:
            out.append(f"VOID: {self.void_reason}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def reconcile(
    ledger: Ledger,
    reader: StoreReader,
    *,
    logs_dir: Path | None = None,
    applied_since: str | None = None,
) -> Report:
    """Compare what the API acknowledged with what every store holds.

    ``applied_since`` (ISO time): also count as unexpected every event any store applied since
    then that nobody acknowledged - only meaningful when nothing else writes to these stores.
    """
    expected = expected_users(ledger)
    report = Report(
        acknowledged=len(ledger.acks),
        users=len(expected),
        gave_up=len(ledger.gave_up),
        rejected=len(ledger.rejected),
        server_errors=sum(ledger.server_errors.values()),
    )
    acked = {a.event_id for a in ledger.acks}
    applied = {d: reader.applied_event_ids(d) for d in DESTINATIONS}
    wanted = {
        "crm": {e for u in expected.values() for e in u.events},
        "analytics": {e for u in expected.values() for e in u.events},
        "marketing": {e for u in expected.values() for e in u.marketing_events},
    }
    for destination in DESTINATIONS:
        report.found["lost"][destination] = sorted(wanted[destination] - applied[destination])
    for destination, counts in logged_outcomes(logs_dir).items():
        report.found["doubled"][destination] = sorted(
            e for e, n in counts.items() if n > 1 and e in acked
        )
    _check_states(report, expected, reader, acked)
    _check_analytics(report, expected, reader, acked)
    if applied_since is not None:
        for destination in DESTINATIONS:
            strangers = reader.applied_event_ids(destination, since=applied_since) - acked
            report.found["unexpected"][destination] = sorted(
                set(report.found["unexpected"][destination]) | strangers
            )
    return report


def _check_states(report: Report, expected, reader: StoreReader, acked: set[str]) -> None:
    for destination in ("crm", "marketing"):
        states = reader.states(destination, list(expected))
        for user_id, want in expected.items():
            state = states.get(user_id)
            target = want.crm if destination == "crm" else want.marketing
            if state is None:
                due = want.events if destination == "crm" else want.marketing_events
                lost = set(report.found["lost"][destination])
                if due and not lost.intersection(due):
                    # Every event counts as applied, yet there is no row: the state is wrong.
                    report.found["stale"][destination].append(user_id)
                continue
            for version in state["versions"].values():
                event_id = version.split("#", 1)[1]
                if event_id not in acked:
                    report.found["unexpected"][destination].append(event_id)
            if target is None:
                if not state["deleted"]:
                    report.found["stale"][destination].append(user_id)
                continue
            # What anyone may see: marketing hides details of people who are not subscribed.
            stored = enforce(state["fields"]) if destination == "marketing" else state["fields"]
            names = PROFILE_FIELDS if destination == "crm" else (*CONTACT_FIELDS, SUBSCRIBED)
            if state["deleted"] or any(
                stored.get(n) != target.get(n) for n in names if n in target
            ):
                report.found["stale"][destination].append(user_id)


def _check_analytics(report: Report, expected, reader: StoreReader, acked: set[str]) -> None:
    logged = reader.analytics_events(list(expected))
    for user_id, want in expected.items():
        events = logged.get(user_id, [])
        extra = set(events) - set(want.events)
        report.found["unexpected"]["analytics"] += sorted(extra)
        if len(events) != len(set(events)):
            report.found["doubled"]["analytics"] += sorted(
                e for e, n in Counter(events).items() if n > 1
            )


def wait_until_settled(
    reader: StoreReader,
    ledger: Ledger,
    *,
    timeout: float,
    logs_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Reconcile until nothing is lost (or ``timeout``); returns the last report."""
    deadline = time.monotonic() + timeout
    while True:
        report = reconcile(ledger, reader, logs_dir=logs_dir)
        missing = report.count("lost")
        if progress:
            progress(missing, len(ledger.acks))
        if missing == 0 or time.monotonic() > deadline:
            return report
        time.sleep(1.0)
