import json
import socket
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from datasync.contract import parse_event
from datasync.core.aws import client as aws_client
from datasync.core.bus import (
    CIRCUIT_OPEN,
    CircuitBreaker,
    EventPublisher,
    PublishError,
    entry_size,
)
from tests.conftest import load_event

EVENT = parse_event(load_event("user_created"))
OK = {"FailedEntryCount": 0, "Entries": [{"EventId": "eb-1"}]}
THROTTLED = {
    "FailedEntryCount": 1,
    "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}],
}
REFUSED = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDeniedException"}]}


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedEvents:
    """An EventBridge client that answers from a script; each call takes ``took`` seconds.

    A ReadTimeoutError in the script stands for a bus that hangs: the call takes the whole
    attempt timeout, as botocore's socket timeouts make it.
    """

    def __init__(self, *answers, clock=None, took=0.001, hang=1.1):
        self.answers = list(answers)
        self.calls = []
        self.clock, self.took, self.hang = clock, took, hang

    def put_events(self, Entries):
        self.calls.append(Entries)
        answer = self.answers.pop(0) if self.answers else ReadTimeoutError(endpoint_url="x")
        if self.clock:
            self.clock.now += self.hang if isinstance(answer, ReadTimeoutError) else self.took
        if isinstance(answer, Exception):
            raise answer
        return answer


def publisher(events, clock, **kwargs):
    breaker = kwargs.pop("breaker", None) or CircuitBreaker(clock=clock)
    return EventPublisher(events, "bus", sleep=clock.sleep, clock=clock, breaker=breaker, **kwargs)


@pytest.fixture
def clock():
    return FakeClock()


# -- what one publish does ------------------------------------------------------------------
def test_publishes_one_entry_with_the_contract_json(clock):
    events = ScriptedEvents(OK)
    assert publisher(events, clock).publish(EVENT) == "eb-1"
    [[entry]] = events.calls
    assert entry["Source"] == "datasync.api" and entry["DetailType"] == "UserCreated"
    assert entry["EventBusName"] == "bus"
    assert parse_event(entry["Detail"]) == EVENT


def test_a_200_with_a_failed_entry_is_retried_then_succeeds(clock):
    events = ScriptedEvents(THROTTLED, THROTTLED, OK)
    assert publisher(events, clock).publish(EVENT) == "eb-1"
    assert len(events.calls) == 3


def test_a_non_retryable_entry_error_fails_at_once(clock):
    events = ScriptedEvents(REFUSED)
    with pytest.raises(PublishError) as info:
        publisher(events, clock).publish(EVENT)
    assert info.value.code == "AccessDeniedException" and not info.value.retryable
    assert len(events.calls) == 1


def test_connection_errors_and_throttling_exceptions_are_retried(clock):
    throttle = ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "PutEvents")
    events = ScriptedEvents(EndpointConnectionError(endpoint_url="http://x"), throttle, OK)
    assert publisher(events, clock).publish(EVENT) == "eb-1"


def test_a_server_error_of_any_code_is_retried(clock):
    error = ClientError(
        {"Error": {"Code": "SomethingNew"}, "ResponseMetadata": {"HTTPStatusCode": 502}},
        "PutEvents",
    )
    events = ScriptedEvents(error, OK)
    assert publisher(events, clock).publish(EVENT) == "eb-1"


# -- the budget bounds the whole publish ---------------------------------------------------
def test_a_hanging_bus_is_given_up_within_the_budget(clock):
    """Every attempt hangs for the full attempt timeout: no attempt may start that cannot end
    inside the budget, so the caller has its answer within the budget."""
    events = ScriptedEvents(clock=clock, hang=0.8)
    started = clock()
    with pytest.raises(PublishError, match="after 2 attempts") as info:
        publisher(events, clock, budget_seconds=2.0, attempt_timeout=0.8).publish(EVENT)
    assert clock() - started <= 2.0
    assert len(events.calls) == 2 and info.value.retryable


def test_throttling_is_retried_until_the_budget_is_spent(clock):
    events = ScriptedEvents(*[THROTTLED] * 100, clock=clock, took=0.01)
    started = clock()
    with pytest.raises(PublishError, match="ThrottlingException"):
        publisher(events, clock, budget_seconds=2.0, attempt_timeout=0.5).publish(EVENT)
    elapsed = clock() - started
    assert 1.0 < elapsed <= 2.0  # the budget was used, not exceeded
    assert 4 <= len(events.calls) < 100


def test_retry_waits_use_jittered_exponential_backoff(clock):
    waits = {}
    for jitter in (0.0, 1.0):
        clock = FakeClock()
        events = ScriptedEvents(THROTTLED, THROTTLED, THROTTLED, OK, clock=clock)
        publisher(events, clock, base_delay=0.1, rng=lambda j=jitter: j).publish(EVENT)
        waits[jitter] = clock.sleeps
    # equal jitter: each wait is between half and all of the exponential step
    assert waits[0.0] == pytest.approx([0.05, 0.1, 0.2])
    assert waits[1.0] == pytest.approx([0.1, 0.2, 0.4])


def test_an_attempt_longer_than_the_budget_is_refused_at_start():
    with pytest.raises(ValueError, match="budget"):
        EventPublisher(ScriptedEvents(), "bus", budget_seconds=1.0, attempt_timeout=1.5)


# -- the circuit breaker -------------------------------------------------------------------
def open_circuit(pub, events, failures):
    for _ in range(failures):
        events.answers += [ReadTimeoutError(endpoint_url="x")] * 2
        with pytest.raises(PublishError):
            pub.publish(EVENT)


def test_the_circuit_opens_after_consecutive_failures_and_then_fails_fast(clock):
    events = ScriptedEvents(clock=clock, hang=0.8)
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=5.0, clock=clock)
    pub = publisher(events, clock, breaker=breaker, attempt_timeout=0.8)
    open_circuit(pub, events, 2)
    assert pub.circuit == "closed"
    open_circuit(pub, events, 1)
    assert pub.circuit == "open"

    calls, started = len(events.calls), clock()
    clock.now += 1.5
    with pytest.raises(PublishError) as info:
        pub.publish(EVENT)
    assert info.value.code == CIRCUIT_OPEN and info.value.retryable
    assert info.value.retry_after == pytest.approx(3.5)  # what is left of the cool-down
    assert len(events.calls) == calls and clock() == started + 1.5  # no call, no wait


def test_a_success_resets_the_failure_count(clock):
    events = ScriptedEvents(clock=clock, hang=0.8)
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    pub = publisher(events, clock, breaker=breaker, attempt_timeout=0.8)
    open_circuit(pub, events, 1)
    events.answers.append(OK)
    pub.publish(EVENT)
    open_circuit(pub, events, 1)
    assert pub.circuit == "closed"


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes(clock):
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5.0, clock=clock)
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 5.0
    assert breaker.state == "half_open"
    breaker.admit()  # the probe
    with pytest.raises(PublishError) as info:
        breaker.admit()  # a second caller while the probe is out
    assert info.value.code == CIRCUIT_OPEN
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.admit()


def test_a_failed_probe_opens_the_circuit_for_another_cool_down(clock):
    events = ScriptedEvents(clock=clock, hang=0.8)
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=5.0, clock=clock)
    pub = publisher(events, clock, breaker=breaker, attempt_timeout=0.8)
    open_circuit(pub, events, 3)
    clock.now += 5.0
    open_circuit(pub, events, 1)  # the probe hangs too: one failure is enough now
    assert pub.circuit == "open" and breaker.retry_after() == pytest.approx(5.0)


def test_a_probe_that_never_reports_does_not_keep_the_circuit_shut(clock):
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5.0
    breaker.admit()  # a probe whose thread then dies without a word
    clock.now += 5.0
    breaker.admit()  # another probe is allowed


def test_an_unexpected_error_counts_as_a_failure(clock):
    events = ScriptedEvents({"unexpected": "shape"}, clock=clock)
    events.put_events = lambda Entries: 1 / 0
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    with pytest.raises(ZeroDivisionError):
        publisher(events, clock, breaker=breaker).publish(EVENT)
    assert breaker.state == "open"


def test_a_refusal_is_an_answer_not_an_outage(clock):
    events = ScriptedEvents(REFUSED, REFUSED, clock=clock)
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    pub = publisher(events, clock, breaker=breaker)
    for _ in range(2):
        with pytest.raises(PublishError):
            pub.publish(EVENT)
    assert breaker.state == "closed"


def test_retries_stop_once_other_requests_have_opened_the_circuit(clock):
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    events = ScriptedEvents(THROTTLED, OK, clock=clock)
    real_put = events.put_events

    def put_while_others_fail(Entries):
        breaker.record_failure()  # meanwhile another request found the bus down
        return real_put(Entries)

    events.put_events = put_while_others_fail
    with pytest.raises(PublishError):
        publisher(events, clock, breaker=breaker).publish(EVENT)
    assert len(events.calls) == 1


# -- the real botocore client under a hung and a closed endpoint ------------------------------
class BlackHole:
    """A TCP server that accepts connections and reads requests, and never answers."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        try:
            while data := conn.recv(65536):
                self.requests += data.count(b"X-Amz-Target: AWSEvents.PutEvents")
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def credentials(monkeypatch):
    """Dummy credentials for a real botocore client (no moto: it would intercept the calls)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")  # the client's own setting must win


def real_publisher(endpoint_url):
    """The publisher as the API builds it, and a count of the HTTP requests its client sends."""
    events = aws_client(
        "events",
        region="us-east-1",
        endpoint_url=endpoint_url,
        connect_timeout=0.3,
        read_timeout=0.6,
        attempts=1,
    )
    sent = []
    events.meta.events.register("before-send.events.PutEvents", lambda **kw: sent.append(1))
    return EventPublisher(events, "bus", budget_seconds=2.0, attempt_timeout=0.9), sent


def test_a_real_client_against_a_hung_bus_answers_within_the_budget(credentials):
    hole = BlackHole()
    pub, sent = real_publisher(hole.url)
    try:
        started = time.monotonic()
        with pytest.raises(PublishError, match="after 2 attempts"):
            pub.publish(EVENT)
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert elapsed < 2.2, f"{elapsed:.2f}s"
    # one HTTP request per attempt, seen on both sides: botocore's own retries are off
    assert len(sent) == 2 and hole.requests == 2


def test_a_real_client_against_a_closed_port_retries_then_answers_within_the_budget(
    credentials,
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    pub, sent = real_publisher(closed)
    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        pub.publish(EVENT)
    assert time.monotonic() - started < 2.2
    # refused at once, so retried (with backoff) while the budget lasts, one request each
    assert len(sent) > 1 and f"after {len(sent)} attempts" in str(info.value)


def test_against_moto_an_event_reaches_a_rule_target_queue(aws):
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name="bus")
    queue = sqs.create_queue(QueueName="target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="r", EventBusName="bus", EventPattern=json.dumps({"source": ["datasync.api"]})
    )
    events.put_targets(Rule="r", EventBusName="bus", Targets=[{"Id": "q", "Arn": arn}])

    real = EventPublisher(events, "bus")
    real.publish(EVENT)
    assert real.is_reachable()
    [message] = sqs.receive_message(QueueUrl=queue).get("Messages", [])
    assert parse_event(json.loads(message["Body"])["detail"]) == EVENT
    assert not EventPublisher(events, "no-such-bus").is_reachable()


# -- micro-batching: concurrent publishes share PutEvents calls -------------------------------
def event(n):
    """A distinct event per n (the entry's Detail tells them apart)."""
    return EVENT.model_copy(update={"correlation_id": f"batch-{n}"})


def correlation(entry):
    return json.loads(entry["Detail"])["correlation_id"]


class GatedEvents:
    """A thread-safe EventBridge fake: each call may be held at a gate; answers per entry.

    ``answer(entry)`` gives the result of one entry ({"EventId": ...} or an ErrorCode). Calls
    wait at the gate while it is closed, so that publishes pile up behind them.
    """

    def __init__(self, answer=None):
        self.calls = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.answer = answer or (lambda entry: {"EventId": f"id-{correlation(entry)}"})

    def put_events(self, Entries):
        self.calls.append(list(Entries))
        self.entered.release()
        if not self.gate.wait(timeout=10):
            raise ReadTimeoutError(endpoint_url="gated")
        results = [self.answer(entry) for entry in Entries]
        failed = sum("ErrorCode" in result for result in results)
        return {"FailedEntryCount": failed, "Entries": results}

    def sent(self):
        return [correlation(entry) for call in self.calls for entry in call]


def publish_concurrently(pub, events, before=None):
    """Publish each event from a thread of its own; results (entry id or exception) in order."""
    results = [None] * len(events)

    def run(index):
        try:
            results[index] = pub.publish(events[index])
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    if before:
        before()
    for thread in threads:
        thread.join(timeout=10)
    return results


def hold_first_call_until_queued(events_fake, pub, queued):
    """Close the gate, let one publish enter a call, queue ``queued`` more behind it."""
    events_fake.gate.clear()
    first = threading.Thread(target=pub.publish, args=(event("first"),))
    first.start()
    assert events_fake.entered.acquire(timeout=5)
    return first


def wait_for_waiting(pub, count):
    deadline = time.monotonic() + 5
    while len(pub._batcher._waiting) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(pub._batcher._waiting) == count


def test_publishes_waiting_behind_a_call_share_the_next_one():
    fake = GatedEvents()
    pub = EventPublisher(fake, "bus", max_in_flight=1)
    first = hold_first_call_until_queued(fake, pub, 7)
    results = publish_concurrently(
        pub,
        [event(i) for i in range(7)],
        before=lambda: (wait_for_waiting(pub, 7), fake.gate.set()),
    )
    first.join(timeout=5)
    assert [len(call) for call in fake.calls] == [1, 7]
    # each publish gets the id of its own entry, whatever its place in the shared call
    assert results == [f"id-batch-{i}" for i in range(7)]


def test_a_lone_publish_is_sent_at_once_and_alone():
    fake = GatedEvents()
    pub = EventPublisher(fake, "bus", linger_seconds=0.05)
    started = time.monotonic()
    assert pub.publish(event(1)) == "id-batch-1"
    assert time.monotonic() - started < 0.04  # no linger without others arriving
    assert [len(call) for call in fake.calls] == [1]


def test_a_call_carries_at_most_ten_entries_and_256_kb():
    fake = GatedEvents()
    pub = EventPublisher(fake, "bus", max_in_flight=1)
    first = hold_first_call_until_queued(fake, pub, 25)
    publish_concurrently(
        pub,
        [event(i) for i in range(25)],
        before=lambda: (wait_for_waiting(pub, 25), fake.gate.set()),
    )
    first.join(timeout=5)
    assert max(len(call) for call in fake.calls) == 10
    assert sorted(fake.sent()) == sorted(["batch-first"] + [f"batch-{i}" for i in range(25)])

    big = GatedEvents()
    pub = EventPublisher(big, "bus", max_in_flight=1)
    first = hold_first_call_until_queued(big, pub, 5)
    name = "x" * 200
    large = [
        EVENT.model_copy(
            update={
                "correlation_id": f"big-{i}",
                "data": EVENT.data.model_copy(
                    update={"attributes": {f"k{j}": name for j in range(20)}}
                ),
            }
        )
        for i in range(5)
    ]
    # pad each entry to ~100 KB through the bus name-independent Detail size
    sizes = {}
    real_entry = pub._entry

    def padded(ev):
        entry = real_entry(ev)
        entry["Detail"] = entry["Detail"][:-1] + ', "pad": "' + "p" * 100_000 + '"}'
        sizes[correlation(entry)] = entry_size(entry)
        return entry

    pub._entry = padded
    publish_concurrently(pub, large, before=lambda: (wait_for_waiting(pub, 5), big.gate.set()))
    first.join(timeout=5)
    for call in big.calls[1:]:
        assert sum(entry_size(entry) for entry in call) <= 256 * 1024
        assert len(call) <= 2
    assert len(big.calls) == 4  # 1 + ceil(5 / 2)


def test_a_refused_entry_fails_only_its_own_publish():
    def answer(entry):
        if correlation(entry) == "batch-2":
            return {"ErrorCode": "AccessDeniedException", "ErrorMessage": "no"}
        return {"EventId": f"id-{correlation(entry)}"}

    fake = GatedEvents(answer)
    pub = EventPublisher(fake, "bus", max_in_flight=1)
    first = hold_first_call_until_queued(fake, pub, 4)
    results = publish_concurrently(
        pub,
        [event(i) for i in range(4)],
        before=lambda: (wait_for_waiting(pub, 4), fake.gate.set()),
    )
    first.join(timeout=5)
    assert [len(call) for call in fake.calls] == [1, 4]
    assert isinstance(results[2], PublishError) and results[2].code == "AccessDeniedException"
    assert [results[i] for i in (0, 1, 3)] == ["id-batch-0", "id-batch-1", "id-batch-3"]


def test_a_throttled_entry_is_retried_alone_while_the_others_are_answered():
    throttled = []

    def answer(entry):
        if correlation(entry) == "batch-1" and not throttled:
            throttled.append(1)
            return {"ErrorCode": "ThrottlingException"}
        return {"EventId": f"id-{correlation(entry)}"}

    fake = GatedEvents(answer)
    pub = EventPublisher(fake, "bus", max_in_flight=1)
    first = hold_first_call_until_queued(fake, pub, 3)
    results = publish_concurrently(
        pub,
        [event(i) for i in range(3)],
        before=lambda: (wait_for_waiting(pub, 3), fake.gate.set()),
    )
    first.join(timeout=5)
    assert results == ["id-batch-0", "id-batch-1", "id-batch-2"]
    assert [correlation(e) for e in fake.calls[-1]] == ["batch-1"]  # only it went again


def test_publishes_queued_behind_a_hung_call_answer_within_their_budget_unsent():
    """The call in flight hangs past every timeout: the publishes waiting behind it give up
    at their own deadline, and their entries are never sent (a 503 that is true)."""
    fake = GatedEvents()
    pub = EventPublisher(fake, "bus", budget_seconds=0.5, attempt_timeout=0.2, max_in_flight=1)
    fake.gate.clear()
    # The publish that sent the call waits for it (the client's timeouts bound it for real).
    hung = threading.Thread(target=pub.publish, args=(event("hung"),))
    hung.start()
    assert fake.entered.acquire(timeout=5)
    started = time.monotonic()
    results = publish_concurrently(pub, [event(i) for i in range(5)])
    elapsed = time.monotonic() - started
    assert not pub._batcher._waiting  # taken back: no later call can carry them
    fake.gate.set()
    hung.join(timeout=15)
    assert all(isinstance(r, PublishError) and r.retryable for r in results), results
    assert elapsed < 0.5 + 0.2, f"{elapsed:.2f}s"
    assert fake.sent() == ["batch-hung"]  # nothing queued was sent after its budget was spent


def test_an_entry_is_not_sent_once_a_whole_attempt_no_longer_fits(clock):
    fake = GatedEvents()
    pub = EventPublisher(fake, "bus", budget_seconds=2.0, attempt_timeout=0.9, clock=clock)
    real_take = pub._batcher._take_batch

    def late_take():
        clock.now += 1.2  # the entry waited for a slot: 0.8 s left, an attempt needs 0.9
        return real_take()

    pub._batcher._take_batch = late_take
    with pytest.raises(PublishError, match="RequestTimeout"):
        pub.publish(event(1))
    assert fake.calls == []


def test_publish_many_answers_each_event_on_its_own():
    def answer(entry):
        if correlation(entry) == "batch-13":
            return {"ErrorCode": "AccessDeniedException"}
        return {"EventId": f"id-{correlation(entry)}"}

    fake = GatedEvents(answer)
    pub = EventPublisher(fake, "bus")
    results = pub.publish_many([event(i) for i in range(25)])
    assert [len(call) for call in fake.calls] == [10, 10, 5]
    assert isinstance(results[13], PublishError) and not results[13].retryable
    assert [r for i, r in enumerate(results) if i != 13] == [
        f"id-batch-{i}" for i in range(25) if i != 13
    ]


def test_publish_many_while_the_circuit_is_open_sends_nothing(clock):
    breaker = CircuitBreaker(failure_threshold=1, clock=clock)
    breaker.record_failure()
    fake = GatedEvents()
    results = publisher(fake, clock, breaker=breaker).publish_many([event(1), event(2)])
    assert all(isinstance(r, PublishError) and r.code == CIRCUIT_OPEN for r in results)
    assert fake.calls == []


def test_many_concurrent_publishes_to_a_hung_real_bus_all_answer_within_the_budget(credentials):
    """The API's publisher (real botocore client) with 12 request threads and a bus that
    accepts connections and never answers: every one gets its 503 inside the 2.5 s bound."""
    hole = BlackHole()
    pub, sent = real_publisher(hole.url)
    try:
        started = time.monotonic()
        results = publish_concurrently(pub, [event(i) for i in range(12)])
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert all(isinstance(r, PublishError) for r in results), results
    assert elapsed < 2.2, f"{elapsed:.2f}s"
    assert len(sent) < 12 * 2  # the hung calls carried several entries each
