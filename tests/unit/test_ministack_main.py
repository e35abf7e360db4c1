"""The MiniStack entry point's patch, against a stand-in for MiniStack's sqs module.

The real module is checked by tests/integration/test_emulator_batches.py, with MiniStack's own
interpreter and a real event source mapping.
"""

from __future__ import annotations

import threading
from types import ModuleType

from devstack.ministack_main import lift_esm_batch_cap


def _receive_messages_for_esm(queue_url, max_number):  # MiniStack 1.5.33's, word for word
    """Receive up to max_number messages for ESM consumption (thread-safe)."""
    with _queues_lock:  # noqa: F821 - the stand-in module's names, as in MiniStack's source
        q = _get_q(queue_url)  # noqa: F821
        max_n = min(int(max_number or 1), 10)
        vis = int(q["attributes"].get("VisibilityTimeout", "30"))
        _expire_retained(q)  # noqa: F821
        _dlq_sweep(q)  # noqa: F821
        return _collect_msgs(q, max_n, vis)  # noqa: F821


def _another_version(queue_url, max_number):
    return []


def fake_sqs(receive=_receive_messages_for_esm) -> tuple[ModuleType, list[str]]:
    calls: list[str] = []
    queue = {"attributes": {"VisibilityTimeout": "45"}, "messages": list(range(150))}
    sqs = ModuleType("fake_ministack_sqs")
    sqs._queues_lock = threading.Lock()
    sqs._get_q = lambda url: queue if url == "q" else None
    sqs._expire_retained = lambda q: calls.append("expire")
    sqs._dlq_sweep = lambda q: calls.append("dlq sweep")
    sqs._collect_msgs = lambda q, n, vis: calls.append(f"visibility {vis}") or q["messages"][:n]
    sqs._receive_messages_for_esm = receive
    return sqs, calls


def test_a_mapping_receives_up_to_the_new_limit_through_the_same_steps():
    sqs, calls = fake_sqs()
    said = lift_esm_batch_cap(sqs, 100)
    assert "up to 100 messages per batch" in said
    assert len(sqs._receive_messages_for_esm("q", 100)) == 100  # MiniStack's own: 10
    assert len(sqs._receive_messages_for_esm("q", 25)) == 25  # the mapping's BatchSize holds
    assert len(sqs._receive_messages_for_esm("q", 0)) == 1  # as MiniStack reads a missing one
    assert calls[:3] == ["expire", "dlq sweep", "visibility 45"]


def test_the_limit_caps_what_the_mapping_asks_for():
    sqs, _ = fake_sqs()
    lift_esm_batch_cap(sqs, 10)
    assert len(sqs._receive_messages_for_esm("q", 100)) == 10


def test_another_ministack_is_left_as_shipped_and_says_so():
    sqs, _ = fake_sqs(_another_version)
    said = lift_esm_batch_cap(sqs, 100)
    assert sqs._receive_messages_for_esm is _another_version
    assert "left as shipped" in said
    sqs, _ = fake_sqs()
    del sqs._dlq_sweep  # a helper it relies on is gone
    lift_esm_batch_cap(sqs, 100)
    assert sqs._receive_messages_for_esm is _receive_messages_for_esm
