"""The MiniStack entry point's wrapper, against a stand-in for MiniStack's sqs module.

The stand-in has the shape of MiniStack 1.5.33's (read from its source): the event source
mapping's ``_receive_messages_for_esm`` takes the lock, caps the batch at 10 and ends in the
module's ``_collect_msgs``, which ``ReceiveMessage`` calls too; ``_collect_msgs`` hands out the
visible messages in queue order, each made invisible for the visibility timeout with its receive
count raised. The real module is exercised by tests/integration/test_emulator_batches.py, with
MiniStack's own interpreter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from devstack.ministack_main import KNOWN_VERSION, lift_esm_batch_cap

ROOT = Path(__file__).resolve().parents[2]


class FakeSqs:
    """MiniStack's queues as far as its receives go."""

    def __init__(self, messages: int = 150, visibility: int = 45):
        self.visibility = visibility
        self.lock = threading.Lock()
        self.queues = {
            url: {
                "is_fifo": url.endswith(".fifo"),
                "messages": [
                    {"id": f"m{i}", "visible_at": 0.0, "receive_count": 0} for i in range(messages)
                ],
            }
            for url in ("q", "q.fifo")
        }
        self.walks: list[int] = []  # the max_n of each call of MiniStack's _collect_msgs
        self.during_next_collect: Callable[[], None] | None = None  # runs once, inside it
        self.module = ModuleType("fake_ministack_sqs")
        self.module._receive_messages_for_esm = self._receive_messages_for_esm
        self.module._collect_msgs = self._collect_msgs

    def _receive_messages_for_esm(self, queue_url: str, max_number: int) -> list[dict]:
        with self.lock:
            q = self.queues[queue_url]  # KeyError: MiniStack's QueueDoesNotExist
            max_n = min(int(max_number or 1), 10)
            return self.module._collect_msgs(q, max_n, self.visibility)

    def _collect_msgs(self, q: dict, max_n: int, vis_timeout: int) -> list[dict]:
        if hook := self.during_next_collect:
            self.during_next_collect = None
            hook()
        self.walks.append(max_n)
        now = time.time()
        batch = [m for m in q["messages"] if m["visible_at"] <= now][:max_n]
        for message in batch:
            message["visible_at"] = now + vis_timeout
            message["receive_count"] += 1
        return batch

    def receive_message(self, queue_url: str, max_number: int) -> list[dict]:
        """The ReceiveMessage API's path: MaxNumberOfMessages (1-10), the same _collect_msgs."""
        return self.module._collect_msgs(self.queues[queue_url], max_number, self.visibility)

    def originals(self) -> bool:
        return (
            self.module._receive_messages_for_esm == self._receive_messages_for_esm
            and self.module._collect_msgs == self._collect_msgs
        )


def patched(limit: int = 10_000, **queues) -> tuple[FakeSqs, ModuleType, str]:
    fake = FakeSqs(**queues)
    said = lift_esm_batch_cap(fake.module, limit, KNOWN_VERSION)
    return fake, fake.module, said


def test_a_batch_is_as_large_as_the_mapping_asks_in_one_walk_each_message_received_once():
    fake, sqs, said = patched()
    assert "take up to 10000 messages per batch" in said
    batch = sqs._receive_messages_for_esm("q", 100)
    assert len({m["id"] for m in batch}) == 100  # MiniStack alone: 10
    assert fake.walks == [100]  # MiniStack's own function, once
    assert {m["receive_count"] for m in batch} == {1}
    assert all(m["visible_at"] > time.time() + 40 for m in batch)  # the queue's 45 s
    rest = sqs._receive_messages_for_esm("q", 100)
    assert len(rest) == 50 and not {m["id"] for m in rest} & {m["id"] for m in batch}
    assert sqs._receive_messages_for_esm("q", 100) == []  # everything in flight


def test_the_mappings_batch_size_and_the_limit_both_hold():
    fake, sqs, _ = patched()
    assert len(sqs._receive_messages_for_esm("q", 25)) == 25
    assert len(sqs._receive_messages_for_esm("q", 0)) == 1  # as MiniStack reads a missing one
    assert fake.walks == [25, 1]
    _, sqs, _ = patched(limit=30)
    assert len(sqs._receive_messages_for_esm("q", 100)) == 30


def test_a_fifo_queue_keeps_batches_of_ten_as_on_aws():
    fake, sqs, _ = patched()
    assert len(sqs._receive_messages_for_esm("q.fifo", 100)) == 10
    assert fake.walks == [10]


def test_receive_message_keeps_its_own_number_on_the_same_thread_and_meanwhile_on_another():
    fake, sqs, _ = patched()
    assert len(fake.receive_message("q", 10)) == 10  # before any mapping's batch
    meanwhile: list[int] = []

    def receive_message_on_another_thread():
        other = threading.Thread(target=lambda: meanwhile.append(len(fake.receive_message("q", 7))))
        other.start()
        other.join(timeout=10)

    fake.during_next_collect = receive_message_on_another_thread
    assert len(sqs._receive_messages_for_esm("q", 100)) == 100
    assert meanwhile == [7]  # while the mapping's batch was being collected
    assert len(fake.receive_message("q", 10)) == 10  # after it
    assert fake.walks == [10, 7, 100, 10]


def test_after_a_failed_receive_the_next_caller_gets_its_own_number():
    fake, sqs, _ = patched()
    with pytest.raises(KeyError):  # the queue deleted meanwhile: MiniStack's own error
        sqs._receive_messages_for_esm("missing", 100)
    assert len(fake.receive_message("q", 10)) == 10

    def fail():
        raise RuntimeError("MiniStack failed while collecting")

    fake.during_next_collect = fail
    with pytest.raises(RuntimeError):
        sqs._receive_messages_for_esm("q", 100)
    assert len(fake.receive_message("q", 10)) == 10  # not the 100 of the failed batch
    assert fake.walks == [10, 10]


def test_the_switch_at_ten_leaves_both_of_ministacks_functions_in_place():
    fake = FakeSqs()
    said = lift_esm_batch_cap(fake.module, 10, KNOWN_VERSION)
    assert fake.originals()  # not wrappers with a limit of 10
    assert "left as shipped" in said and "DATASYNC_EMULATOR_ESM_MAX_BATCH" in said


def test_another_ministack_version_is_left_as_shipped_and_says_so():
    fake = FakeSqs()
    said = lift_esm_batch_cap(fake.module, 10_000, "1.5.34")
    assert fake.originals()
    assert "left as shipped" in said and "1.5.34" in said and KNOWN_VERSION in said


def test_functions_not_shaped_as_expected_are_left_as_shipped_and_say_why():
    fake = FakeSqs()
    del fake.module._collect_msgs
    said = lift_esm_batch_cap(fake.module, 10_000, KNOWN_VERSION)
    assert "left as shipped" in said and "no sqs._collect_msgs" in said

    fake = FakeSqs()
    fake.module._collect_msgs = lambda q, max_n, vis_timeout, now: []
    said = lift_esm_batch_cap(fake.module, 10_000, KNOWN_VERSION)
    assert fake.module._receive_messages_for_esm == fake._receive_messages_for_esm
    assert "left as shipped" in said and "(q, max_n, vis_timeout, now)" in said

    fake = FakeSqs()
    fake.module._receive_messages_for_esm = lambda queue_url, max_number: []
    said = lift_esm_batch_cap(fake.module, 10_000, KNOWN_VERSION)
    assert fake.module._collect_msgs == fake._collect_msgs
    assert "left as shipped" in said and "does not call sqs._collect_msgs" in said


def test_the_version_it_patches_is_the_one_the_lock_file_installs():
    """Bumping MiniStack in requirements/ministack.lock fails here until the wrapper's reading
    of MiniStack's source is redone for the new version (and KNOWN_VERSION moved)."""
    pins = (ROOT / "requirements" / "ministack.lock").read_text().splitlines()
    assert f"ministack=={KNOWN_VERSION}" in [line.split(" ")[0] for line in pins]
