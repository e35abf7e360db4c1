"""The MiniStack entry point's wrapper, against a stand-in for MiniStack's sqs module.

The stand-in's receive does what MiniStack 1.5.33's does (read from its source): at most 10 per
call, the visible messages in queue order, each made invisible for the queue's visibility
timeout with its receive count raised. The real module is exercised by
tests/integration/test_emulator_batches.py, with MiniStack's own interpreter.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest

from devstack.ministack_main import KNOWN_VERSION, lift_esm_batch_cap

ROOT = Path(__file__).resolve().parents[2]


class FakeQueues:
    """MiniStack's queues as far as its event source mapping receive goes."""

    def __init__(self, messages: int = 150, visibility: int = 45):
        self.visibility = visibility
        self.queues: dict[str, list[dict]] = {}
        self.calls: list[int] = []  # the max_number of each call of MiniStack's function
        for url in ("q", "q.fifo"):
            self.queues[url] = [
                {"id": f"m{i}", "visible_at": 0.0, "receive_count": 0} for i in range(messages)
            ]

    def receive(self, queue_url: str, max_number: int) -> list[dict]:
        self.calls.append(max_number)
        if queue_url not in self.queues:
            raise LookupError("QueueDoesNotExist")
        now = time.time()
        visible = [m for m in self.queues[queue_url] if m["visible_at"] <= now]
        batch = visible[: min(int(max_number or 1), 10)]
        for message in batch:
            message["visible_at"] = now + self.visibility
            message["receive_count"] += 1
        return batch

    def module(self) -> ModuleType:
        sqs = ModuleType("fake_ministack_sqs")
        sqs._receive_messages_for_esm = self.receive
        return sqs


def patched(limit: int = 10_000, **queues) -> tuple[FakeQueues, ModuleType, str]:
    fake = FakeQueues(**queues)
    sqs = fake.module()
    said = lift_esm_batch_cap(sqs, limit, KNOWN_VERSION)
    return fake, sqs, said


def test_a_batch_is_as_large_as_the_mapping_asks_and_each_message_is_received_once():
    fake, sqs, said = patched()
    assert "take up to 10000 messages per batch" in said
    batch = sqs._receive_messages_for_esm("q", 100)
    assert len({m["id"] for m in batch}) == 100  # MiniStack alone: 10
    assert fake.calls == [10] * 10  # MiniStack's own function, ten times
    assert {m["receive_count"] for m in batch} == {1}
    assert all(m["visible_at"] > time.time() + 40 for m in batch)  # the queue's 45 s
    rest = sqs._receive_messages_for_esm("q", 100)
    assert len(rest) == 50 and not {m["id"] for m in rest} & {m["id"] for m in batch}
    assert sqs._receive_messages_for_esm("q", 100) == []  # everything in flight


def test_the_mappings_batch_size_and_the_limit_both_hold():
    fake, sqs, _ = patched()
    assert len(sqs._receive_messages_for_esm("q", 25)) == 25
    assert fake.calls == [10, 10, 5]
    assert len(sqs._receive_messages_for_esm("q", 0)) == 1  # as MiniStack reads a missing one
    _, sqs, _ = patched(limit=30)
    assert len(sqs._receive_messages_for_esm("q", 100)) == 30


def test_a_short_queue_ends_the_batch_without_another_call():
    fake, sqs, _ = patched(messages=25)
    assert len(sqs._receive_messages_for_esm("q", 100)) == 25
    assert fake.calls == [10, 10, 10]  # the third came back with 5: nothing more to give


def test_a_fifo_queue_keeps_batches_of_ten_as_on_aws():
    fake, sqs, _ = patched()
    assert len(sqs._receive_messages_for_esm("q.fifo", 100)) == 10
    assert fake.calls == [10]


def test_a_queue_without_a_visibility_timeout_never_hands_a_message_out_twice():
    fake, sqs, _ = patched(visibility=0)
    batch = sqs._receive_messages_for_esm("q", 100)
    assert len(batch) == 10 and fake.calls == [10]
    assert {m["receive_count"] for m in fake.queues["q"]} == {0, 1}


def test_a_failure_after_the_first_call_keeps_what_was_received():
    fake, sqs, _ = patched()
    real = fake.receive

    def vanishes_after_one_call(url, n):
        if fake.calls:
            fake.calls.append(n)
            raise LookupError("QueueDoesNotExist")
        return real(url, n)

    fake.receive = vanishes_after_one_call
    sqs = fake.module()
    lift_esm_batch_cap(sqs, 10_000, KNOWN_VERSION)
    assert len(sqs._receive_messages_for_esm("q", 100)) == 10  # they reach the function
    with pytest.raises(LookupError):  # a first call's failure is MiniStack's, as shipped
        sqs._receive_messages_for_esm("missing", 100)


def test_the_switch_at_ten_leaves_ministacks_own_function_in_place():
    fake = FakeQueues()
    sqs = fake.module()
    said = lift_esm_batch_cap(sqs, 10, KNOWN_VERSION)
    assert sqs._receive_messages_for_esm == fake.receive  # not a wrapper with a limit of 10
    assert "left as shipped" in said and "DATASYNC_EMULATOR_ESM_MAX_BATCH" in said


def test_another_ministack_version_is_left_as_shipped_and_says_so():
    fake = FakeQueues()
    sqs = fake.module()
    said = lift_esm_batch_cap(sqs, 10_000, "1.5.34")
    assert sqs._receive_messages_for_esm == fake.receive
    assert "left as shipped" in said and "1.5.34" in said and KNOWN_VERSION in said
    gone = ModuleType("sqs_without_the_function")
    assert "left as shipped" in lift_esm_batch_cap(gone, 10_000, KNOWN_VERSION)


def test_the_version_it_patches_is_the_one_the_lock_file_installs():
    """Bumping MiniStack in requirements/ministack.lock fails here until the wrapper's reading
    of MiniStack's source is redone for the new version (and KNOWN_VERSION moved)."""
    pins = (ROOT / "requirements" / "ministack.lock").read_text().splitlines()
    assert f"ministack=={KNOWN_VERSION}" in [line.split(" ")[0] for line in pins]
