"""Controller requeue semantics (controller-runtime rules) with a pure in-process reconcile."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import pytest

from agentic_operator._controller import Controller, Result
from agentic_operator._metrics import Registry
from agentic_operator._workqueue import WorkQueue
from tests.conftest import wait_until

pytestmark = pytest.mark.unit


def _controller(reconcile, *, workers: int = 2, **kw):  # type: ignore[no-untyped-def]
    reg = Registry()
    q = kw.pop("queue", None) or WorkQueue(name="t", base_delay=0.01, qps=0)
    return Controller(
        name="t", reconcile=reconcile, workers=workers, queue=q, registry=reg, **kw
    ), reg


def test_success_forgets_and_runs_once() -> None:
    calls: Counter[str] = Counter()

    def rec(key: str) -> Result:
        calls[key] += 1
        return Result()

    c, reg = _controller(rec)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: calls["a"] == 1, timeout=5)
    time.sleep(0.1)
    assert calls["a"] == 1
    assert c.queue.num_requeues("a") == 0
    stop.set()
    assert c.shutdown(2)
    assert b'controller_runtime_reconcile_total{controller="t",result="success"} 1' in reg.render()


def test_exception_requeues_with_backoff_until_success() -> None:
    calls: list[float] = []

    def rec(key: str) -> Result:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise RuntimeError("boom")
        return Result()

    c, reg = _controller(rec)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: len(calls) == 4, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # base 10 ms doubling: 10, 20, 40 ms
    assert gaps[0] >= 0.009
    assert gaps[2] >= 0.035
    wait_until(lambda: c.queue.num_requeues("a") == 0, timeout=2, what="forget after success")
    stop.set()
    c.shutdown(2)
    text = reg.render().decode()
    assert 'controller_runtime_reconcile_errors_total{controller="t"} 3' in text


def test_error_requeue_is_a_fixed_delay() -> None:
    calls: list[float] = []

    def rec(key: str) -> Result:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("boom")
        return Result()

    c, _ = _controller(rec, error_requeue=0.2)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: len(calls) == 3, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(0.19 <= g < 0.5 for g in gaps), gaps
    stop.set()
    c.shutdown(2)


def test_requeue_after_forgets_failures_and_delays() -> None:
    calls: list[float] = []

    def rec(key: str) -> Result:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("first fails")
        if len(calls) == 2:
            return Result(requeue_after=0.25)
        return Result()

    c, _ = _controller(rec)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: len(calls) == 2, timeout=5)
    wait_until(lambda: c.queue.num_requeues("a") == 0, timeout=2)
    wait_until(lambda: len(calls) == 3, timeout=5)
    assert calls[2] - calls[1] >= 0.24
    stop.set()
    c.shutdown(2)


def test_result_requeue_uses_rate_limit() -> None:
    calls: list[float] = []

    def rec(key: str) -> Result:
        calls.append(time.monotonic())
        return Result(requeue=len(calls) < 3)

    c, _ = _controller(rec)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: len(calls) == 3, timeout=5)
    stop.set()
    c.shutdown(2)


def test_same_key_never_reconciled_concurrently() -> None:
    active: Counter[str] = Counter()
    overlap: list[str] = []
    done: Counter[str] = Counter()
    lock = threading.Lock()

    def rec(key: str) -> Result:
        with lock:
            active[key] += 1
            if active[key] > 1:
                overlap.append(key)
        time.sleep(0.002)
        with lock:
            active[key] -= 1
            done[key] += 1
        return Result()

    c, _ = _controller(rec, workers=10)
    stop = threading.Event()
    c.run(stop)
    for i in range(500):
        c.enqueue(f"k{i % 5}")
        if i % 50 == 0:
            time.sleep(0.005)
    wait_until(c.queue.idle, timeout=10)
    assert not overlap
    assert set(done) == {f"k{i}" for i in range(5)}
    stop.set()
    assert c.shutdown(2)


def test_shutdown_drains_in_flight_but_starts_nothing_new() -> None:
    started: list[str] = []
    finished: list[str] = []
    gate = threading.Event()

    def rec(key: str) -> Result:
        started.append(key)
        gate.wait(2)
        time.sleep(0.1)
        finished.append(key)
        return Result()

    c, _ = _controller(rec, workers=1)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("first")
    wait_until(lambda: started == ["first"], timeout=2)
    for i in range(50):
        c.enqueue(f"queued-{i}")
    stop.set()
    gate.set()
    t0 = time.monotonic()
    assert c.shutdown(3)
    assert time.monotonic() - t0 < 1.0
    assert finished == ["first"]
    assert started == ["first"]


def test_shutdown_reports_stuck_reconcile() -> None:
    release = threading.Event()

    def rec(key: str) -> Result:
        release.wait(5)
        return Result()

    c, _ = _controller(rec, workers=1)
    stop = threading.Event()
    c.run(stop)
    c.enqueue("a")
    wait_until(lambda: c.active_workers == 1, timeout=2)
    assert not c.shutdown(0.2)
    release.set()


def test_default_queue_reports_workqueue_metrics() -> None:
    reg = Registry()
    c = Controller(name="dq", reconcile=lambda k: Result(), workers=1, registry=reg)
    c.enqueue("a")
    text = reg.render().decode()
    assert 'workqueue_adds_total{name="dq"} 1' in text
    assert 'workqueue_depth{name="dq"} 1' in text
