"""WorkQueue semantics that reconcilers rely on: dedup, single-flight, backoff, drain."""

from __future__ import annotations

import threading
import time
from collections import Counter
from unittest.mock import Mock

import pytest

from agentic_operator._workqueue import QueueHooks, TokenBucket, WorkQueue

pytestmark = pytest.mark.unit


def test_duplicates_coalesce() -> None:
    q = WorkQueue(name="t")
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.adds_total == 2
    assert q.get(0) == "a"
    assert q.get(0) == "b"
    assert q.get(0.01) is None


def test_key_added_while_processing_is_requeued_once_after_done() -> None:
    q = WorkQueue(name="t")
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")
    q.add("a")
    # Not handed out while in flight, even though it is dirty.
    assert len(q) == 0
    assert q.get(0.02) is None
    q.done("a")
    assert len(q) == 1
    assert q.get(0) == "a"
    q.done("a")
    assert q.get(0.01) is None


def test_never_processed_by_two_workers_at_once() -> None:
    q = WorkQueue(name="t")
    in_flight: set[str] = set()
    lock = threading.Lock()
    overlaps: list[str] = []
    processed: Counter[str] = Counter()

    def worker() -> None:
        while True:
            key = q.get()
            if key is None:
                return
            with lock:
                if key in in_flight:
                    overlaps.append(key)
                in_flight.add(key)
            time.sleep(0.0005)
            with lock:
                in_flight.discard(key)
                processed[key] += 1
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(2000):
        q.add(f"k{i % 10}")
    time.sleep(0.3)
    assert q.shutdown_with_drain(5)
    for t in threads:
        t.join(5)
    assert not overlaps
    assert set(processed) == {f"k{i}" for i in range(10)}


def test_add_after_delays_and_coalesces_to_earliest() -> None:
    q = WorkQueue(name="t")
    t0 = time.monotonic()
    q.add_after("a", 0.3)
    q.add_after("a", 0.1)  # earlier wins
    q.add_after("a", 5.0)  # later is ignored
    assert q.delayed == 1
    assert len(q) == 0
    assert q.get(2) == "a"
    waited = time.monotonic() - t0
    assert 0.08 <= waited < 0.28
    q.done("a")
    assert q.get(0.4) is None  # the 0.3 s entry was coalesced away


def test_delayed_heap_stays_bounded() -> None:
    q = WorkQueue(name="t")
    for i in range(10_000):
        # ever earlier times for the same few keys: each one supersedes the last
        q.add_after(f"k{i % 3}", 1000.0 - i * 0.01)
    assert q.delayed == 3
    assert len(q._heap) <= 2 * 3 + 64 + 1


def test_add_after_zero_is_immediate() -> None:
    q = WorkQueue(name="t")
    q.add_after("a", 0)
    assert q.get(0) == "a"


def test_rate_limited_backoff_is_exponential_and_forget_resets() -> None:
    q = WorkQueue(name="t", base_delay=0.01, max_delay=1.0, qps=0)
    delays = [q.when("a") for _ in range(10)]
    assert delays[:4] == pytest.approx([0.01, 0.02, 0.04, 0.08])
    assert delays[-1] == 1.0  # capped
    assert q.num_requeues("a") == 10
    q.forget("a")
    assert q.num_requeues("a") == 0
    assert q.when("a") == pytest.approx(0.01)


def test_add_rate_limited_requeues_after_backoff() -> None:
    q = WorkQueue(name="t", base_delay=0.05, qps=0)
    q.add_rate_limited("a")
    assert q.retries_total == 1
    assert q.get(0) is None
    assert q.get(1) == "a"


def test_item_delay_override_still_counts_failures() -> None:
    q = WorkQueue(name="t", qps=0)
    t0 = time.monotonic()
    q.add_rate_limited("a", item_delay=0.15)
    assert q.num_requeues("a") == 1
    assert q.get(1) == "a"
    assert time.monotonic() - t0 >= 0.14


def test_global_token_bucket_limits_retries() -> None:
    b = TokenBucket(qps=10, burst=2)
    assert b.reserve() == 0
    assert b.reserve() == 0
    third = b.reserve()
    fourth = b.reserve()
    assert third == pytest.approx(0.1, abs=0.02)
    assert fourth == pytest.approx(0.2, abs=0.02)


def test_bucket_delay_wins_over_small_item_backoff() -> None:
    q = WorkQueue(name="t", base_delay=0.001, qps=10, burst=1)
    assert q.when("a") == pytest.approx(0.001)
    assert q.when("b") == pytest.approx(0.1, abs=0.02)


def test_get_timeout_and_shutdown() -> None:
    q = WorkQueue(name="t")
    t0 = time.monotonic()
    assert q.get(0.05) is None
    assert time.monotonic() - t0 >= 0.04
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(1)
    assert got == [None]


def test_shutdown_hands_out_queued_then_none_and_ignores_new_adds() -> None:
    q = WorkQueue(name="t")
    q.add("a")
    q.add_after("later", 0.05)
    q.shutdown()
    q.add("b")
    assert q.get(0) == "a"
    assert q.get(0.1) is None  # delayed items are dropped on shutdown
    assert q.shutting_down


def test_shutdown_with_drain_waits_for_in_flight() -> None:
    q = WorkQueue(name="t")
    q.add("a")
    assert q.get(0) == "a"
    threading.Timer(0.15, q.done, args=("a",)).start()
    t0 = time.monotonic()
    assert q.shutdown_with_drain(2)
    assert 0.1 <= time.monotonic() - t0 < 1.5


def test_shutdown_with_drain_times_out() -> None:
    q = WorkQueue(name="t")
    q.add("a")
    assert q.get(0) == "a"
    assert not q.shutdown_with_drain(0.05)


def test_delayed_item_wakes_a_blocked_worker() -> None:
    q = WorkQueue(name="t")
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(3)))
    t.start()
    time.sleep(0.05)
    q.add_after("a", 0.1)
    t.join(2)
    assert got == ["a"]


def test_metrics_hooks() -> None:
    h = Mock(spec=QueueHooks)
    q = WorkQueue(name="t", metrics=h, qps=0, base_delay=0.001)
    q.add("a")
    q.add("a")
    time.sleep(0.02)
    key = q.get(0)
    time.sleep(0.02)
    assert key == "a"
    q.done(key)
    q.add_rate_limited("b")
    assert h.add.call_count == 1
    assert [c.args for c in h.depth.call_args_list] == [(1,), (0,)]
    assert h.latency.call_args_list[0].args[0] >= 0.015
    assert h.work_duration.call_args_list[0].args[0] >= 0.015
    assert h.retry.call_count == 1


def test_idle() -> None:
    q = WorkQueue(name="t")
    assert q.idle()
    q.add_after("a", 10)
    assert not q.idle()
