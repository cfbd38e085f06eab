"""Controller requeue semantics (controller-runtime rules) with a pure in-process reconcile.

A reconcile returns (Result, error) as controller-runtime's does; an exception that escapes
it is handled like a returned error.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from agentic_operator._controller import Controller, Outcome, Reconcile, Result, TerminalError
from agentic_operator._metrics import new_registry, render
from agentic_operator._workqueue import WorkQueue
from tests.conftest import wait_until

pytestmark = pytest.mark.unit


def _started(
    reconcile: Reconcile, *keys: str, workers: int = 2, error_requeue: float | None = None
) -> tuple[Controller, CollectorRegistry, threading.Event]:
    """A controller whose workers run, with `keys` enqueued; set the event to stop it."""
    reg = new_registry()
    q = WorkQueue(name="t", base_delay=0.01, qps=0)
    c = Controller(
        name="t",
        reconcile=reconcile,
        workers=workers,
        queue=q,
        error_requeue=error_requeue,
        registry=reg,
    )
    stop = threading.Event()
    c.run(stop)
    for key in keys:
        c.enqueue(key)
    return c, reg, stop


class _Scripted:
    """A reconcile that plays `steps`, one a call (an exception type is raised, a Result or
    a (Result, error) outcome returned), then succeeds; it records when each call came."""

    def __init__(self, *steps: Result | Outcome | type[Exception]) -> None:
        self.steps = steps
        self.calls: list[float] = []  # monotonic

    def __call__(self, key: str) -> Outcome:
        self.calls.append(time.monotonic())
        step = self.steps[len(self.calls) - 1] if len(self.calls) <= len(self.steps) else Result()
        if isinstance(step, Result):
            return step, None
        if isinstance(step, tuple):
            return step
        raise step("boom")


def test_success_forgets_and_runs_once() -> None:
    calls: Counter[str] = Counter()

    def rec(key: str) -> Outcome:
        calls[key] += 1
        return Result(), None

    c, reg, stop = _started(rec, "a")
    wait_until(lambda: calls["a"] == 1, timeout=5)
    time.sleep(0.1)
    assert calls["a"] == 1
    assert c.queue.num_requeues("a") == 0
    stop.set()
    assert c.shutdown(2)
    assert b'controller_runtime_reconcile_total{controller="t",result="success"} 1.0' in render(reg)


def test_exception_requeues_with_backoff_until_success() -> None:
    rec = _Scripted(RuntimeError, RuntimeError, RuntimeError)
    c, reg, stop = _started(rec, "a")
    wait_until(lambda: len(rec.calls) == 4, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(rec.calls)]
    # base 10 ms doubling: 10, 20, 40 ms
    assert gaps[0] >= 0.009
    assert gaps[2] >= 0.035
    wait_until(lambda: c.queue.num_requeues("a") == 0, timeout=2, what="forget after success")
    stop.set()
    c.shutdown(2)
    text = render(reg).decode()
    assert 'controller_runtime_reconcile_errors_total{controller="t"} 3.0' in text


def test_error_requeue_is_a_fixed_delay() -> None:
    rec = _Scripted(RuntimeError, RuntimeError)
    c, _, stop = _started(rec, "a", error_requeue=0.2)
    wait_until(lambda: len(rec.calls) == 3, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(rec.calls)]
    assert all(0.19 <= g < 0.5 for g in gaps), gaps
    stop.set()
    c.shutdown(2)


def test_requeue_after_forgets_failures_and_delays() -> None:
    rec = _Scripted(RuntimeError, Result(requeue_after=0.25))
    c, _, stop = _started(rec, "a")
    wait_until(lambda: len(rec.calls) == 2, timeout=5)
    wait_until(lambda: c.queue.num_requeues("a") == 0, timeout=2)
    wait_until(lambda: len(rec.calls) == 3, timeout=5)
    assert rec.calls[2] - rec.calls[1] >= 0.24
    stop.set()
    c.shutdown(2)


def test_result_requeue_uses_rate_limit() -> None:
    rec = _Scripted(Result(requeue=True), Result(requeue=True))
    c, _, stop = _started(rec, "a")
    wait_until(lambda: len(rec.calls) == 3, timeout=5)
    stop.set()
    c.shutdown(2)


def test_same_key_never_reconciled_concurrently() -> None:
    active: Counter[str] = Counter()
    overlap: list[str] = []
    done: Counter[str] = Counter()
    lock = threading.Lock()

    def rec(key: str) -> Outcome:
        with lock:
            active[key] += 1
            if active[key] > 1:
                overlap.append(key)
        time.sleep(0.002)
        with lock:
            active[key] -= 1
            done[key] += 1
        return Result(), None

    c, _, stop = _started(rec, workers=10)
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

    def rec(key: str) -> Outcome:
        started.append(key)
        gate.wait(2)
        time.sleep(0.1)
        finished.append(key)
        return Result(), None

    c, _, stop = _started(rec, "first", workers=1)
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

    def rec(key: str) -> Outcome:
        release.wait(5)
        return Result(), None

    c, _, _ = _started(rec, "a", workers=1)
    wait_until(lambda: c.active_workers == 1, timeout=2)
    assert not c.shutdown(0.2)
    release.set()


def test_default_queue_reports_workqueue_metrics() -> None:
    reg = new_registry()
    c = Controller(name="dq", reconcile=lambda k: (Result(), None), workers=1, registry=reg)
    c.enqueue("a")
    text = render(reg).decode()
    assert 'workqueue_adds_total{name="dq"} 1.0' in text
    assert 'workqueue_depth{name="dq"} 1.0' in text


def test_returned_error_is_counted_once_and_retried() -> None:
    away = (Result(requeue_after=60), ConnectionError("apiserver away"))
    rec = _Scripted(away, away)
    c, reg, stop = _started(rec, "a")
    # The error wins over the result's requeue_after (60 s): retried with backoff at once.
    wait_until(lambda: len(rec.calls) == 3, timeout=5)
    stop.set()
    c.shutdown(2)
    assert (
        reg.get_sample_value("controller_runtime_reconcile_errors_total", {"controller": "t"}) == 2
    )
    assert (
        reg.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": "t", "result": "error"}
        )
        == 2
    )
    assert (
        reg.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": "t", "result": "success"}
        )
        == 1
    )


def test_terminal_error_is_not_retried() -> None:
    calls: list[str] = []

    def rec(key: str) -> Outcome:
        calls.append(key)
        return Result(), TerminalError(ValueError("the manifest is invalid"))

    c, reg, stop = _started(rec, "a")
    wait_until(lambda: calls == ["a"], timeout=5)
    time.sleep(0.3)
    stop.set()
    c.shutdown(2)
    assert calls == ["a"]
    assert c.queue.num_requeues("a") == 0
    labels = {"controller": "t"}
    assert reg.get_sample_value("controller_runtime_reconcile_errors_total", labels) == 1
    assert reg.get_sample_value("controller_runtime_terminal_reconcile_errors_total", labels) == 1
