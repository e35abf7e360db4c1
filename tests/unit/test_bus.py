import json
import socket
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from datasync.contract import parse_event
from datasync.core.aws import client as aws_client
from datasync.core.bus import CIRCUIT_OPEN, CircuitBreaker, EventPublisher, PublishError
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
