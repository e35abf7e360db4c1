"""The SQS helpers against crafted input: attempt attributes, oversized dead letters and batches."""

from __future__ import annotations

import pytest

from datasync.core.queues import (
    MAX_ATTEMPT,
    MAX_MESSAGE_BYTES,
    BadAttempt,
    OutgoingMessage,
    dead_letter,
    delivery_attempt,
    message_size,
    retry_delay,
    send_batch,
)
from datasync.core.retry import backoff_delay
from tests import crafted


def message(attempt: str | None = None, receive_count: int = 1) -> dict:
    attributes = {}
    if attempt is not None:
        attributes["delivery_attempt"] = {"DataType": "Number", "StringValue": attempt}
    return {
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
        "MessageAttributes": attributes,
    }


def test_the_attempt_of_a_message_counts_its_carried_attempts_and_its_receives():
    assert delivery_attempt(message()) == 1
    assert delivery_attempt(message(receive_count=3)) == 3
    assert delivery_attempt(message("2", receive_count=2)) == 3
    assert delivery_attempt(message(str(MAX_ATTEMPT))) == MAX_ATTEMPT


@pytest.mark.parametrize(
    "value", list(crafted.BAD_ATTEMPTS.values()), ids=list(crafted.BAD_ATTEMPTS)
)
def test_an_attempt_attribute_that_is_not_an_attempt_is_refused(value):
    with pytest.raises(BadAttempt, match="not a whole number from 1 to 1000"):
        delivery_attempt(message(value))


def test_a_huge_attempt_backs_off_by_the_cap_instead_of_overflowing():
    assert retry_delay(2 * MAX_ATTEMPT) <= 300
    # 0.1 * 2**1999 does not fit in a float: without a bounded exponent this raised.
    assert backoff_delay(2 * MAX_ATTEMPT, base=0.1, cap=1.0, jitter=False) == 1.0


class SizeCheckingSqs:
    """SQS's size limits, as AWS applies them (moto and the emulator may not)."""

    def __init__(self):
        self.sent, self.calls = [], 0

    def send_message(self, QueueUrl, MessageBody, MessageAttributes):
        assert message_size(MessageBody, MessageAttributes) <= MAX_MESSAGE_BYTES, "too large"
        self.sent.append((MessageBody, MessageAttributes))

    def send_message_batch(self, QueueUrl, Entries):
        self.calls += 1
        total = sum(message_size(e["MessageBody"], e["MessageAttributes"]) for e in Entries)
        if len(Entries) > 10 or total > MAX_MESSAGE_BYTES:
            raise AssertionError(f"a call SQS refuses: {len(Entries)} entries, {total} bytes")
        self.sent += [(e["MessageBody"], e["MessageAttributes"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_a_dead_letter_too_large_for_its_reason_is_cut_to_fit_and_says_so():
    sqs = SizeCheckingSqs()
    body = crafted.garbage("big", size=MAX_MESSAGE_BYTES)  # as large as SQS takes
    trace = {"correlation_id": {"DataType": "String", "StringValue": "c" * 1000}}
    dead_letter(sqs, "dlq", body, reason="not a record", stage="consume", attributes=trace,
                receive_count=1)  # fmt: skip
    [(sent, attributes)] = sqs.sent
    assert body.startswith(sent) and len(sent) < len(body)
    reason = attributes["failure_reason"]["StringValue"]
    assert reason == (
        f"not a record; body cut from {len(body.encode())} bytes to fit in the DLQ with this reason"
    )
    assert attributes["failure_receive_count"]["StringValue"] == "1"


def test_a_dead_letter_that_fits_goes_whole_with_its_attributes():
    sqs = SizeCheckingSqs()
    body = crafted.garbage("fits")  # 250 KiB: room for the reason
    trace = {"correlation_id": {"DataType": "String", "StringValue": "c-1"}}
    dead_letter(sqs, "dlq", body, reason="not a record", stage="consume", attributes=trace)
    [(sent, attributes)] = sqs.sent
    assert sent == body and attributes["correlation_id"]["StringValue"] == "c-1"


def test_a_batch_of_large_messages_is_sent_in_calls_sqs_accepts():
    sqs = SizeCheckingSqs()
    bodies = [crafted.garbage(f"m{i}", size=100 * 1024) for i in range(5)]
    send_batch(sqs, "q", [OutgoingMessage(str(i), b, {}) for i, b in enumerate(bodies)])
    assert [body for body, _ in sqs.sent] == bodies, "all of them, in order"
    assert sqs.calls == 3  # two per call: a third would pass 256 KiB
