"""Workers that drain a WorkQueue into a reconcile function, with controller-runtime rules.

The reconcile contract is controller-runtime's: given a key, make the world match the spec
and return a `Result` (look again after a delay, or not) plus an error. A reconciler does
not log, count or schedule its own failures: it returns the error and the controller
counts it once (`controller_runtime_reconcile_errors_total`), logs it once and requeues
the key with per-key backoff, or, for a `TerminalError`, drops it, since retrying cannot
help. An exception that escapes reconcile is handled like a returned error (a panic in
controller-runtime). This module also owns the N worker threads and a shutdown that lets
in-flight reconciles finish (bounded) without starting queued ones, so SIGTERM is quick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentic_operator._informer import call_when_set
from agentic_operator._metrics import REGISTRY, QueueMetrics, family
from agentic_operator._workqueue import WorkQueue

__all__ = ["Controller", "Outcome", "Reconcile", "Result", "TerminalError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What reconcile asks for: nothing, a look again after a delay, or a backoff retry."""

    requeue_after: float | None = None
    requeue: bool = False


class TerminalError(Exception):
    """controller-runtime's `reconcile.TerminalError`: counted and logged, never retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


Outcome = tuple[Result, BaseException | None]
"""What reconcile returns: (Result, None) on success, (Result(), error) on failure."""
Reconcile = Callable[[str], Outcome]


class Controller:
    """Runs `reconcile(key)` on `workers` threads; keys come from `enqueue` (informer handlers)."""

    def __init__(
        self,
        *,
        name: str,
        reconcile: Reconcile,
        workers: int,
        queue: WorkQueue | None = None,
        error_requeue: float | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        reg = registry if registry is not None else REGISTRY
        self._queue = (
            queue if queue is not None else WorkQueue(name=name, metrics=QueueMetrics(reg, name))
        )
        # None: exceptions back off exponentially per key; a number: fixed delay per retry
        # (upstream requeues errors after 5 s), still subject to the global rate limit.
        self._error_requeue = error_requeue
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._active = 0
        self._active_lock = threading.Lock()
        self._m_total = family(
            reg,
            Counter,
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ("controller", "result"),
        )
        self._m_errors = family(
            reg,
            Counter,
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ("controller",),
        ).labels(name)
        self._m_terminal = family(
            reg,
            Counter,
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            ("controller",),
        ).labels(name)
        self._m_time = family(
            reg,
            Histogram,
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ("controller",),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        ).labels(name)
        self._m_workers = family(
            reg,
            Gauge,
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ("controller",),
        ).labels(name)
        self._m_max = family(
            reg,
            Gauge,
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ("controller",),
        ).labels(name)
        self._m_max.set(workers)
        self._results = {
            r: self._m_total.labels(name, r)
            for r in ("success", "error", "requeue", "requeue_after")
        }

    @property
    def queue(self) -> WorkQueue:
        return self._queue

    def enqueue(self, key: str) -> None:
        self._queue.add(key)

    def run(self, stop: threading.Event) -> None:
        """Start the workers and return; `stop` (or `shutdown`) ends them."""
        if self._threads:
            raise RuntimeError(f"controller {self.name} already running")
        for i in range(self._workers):
            t = threading.Thread(
                target=self._worker, args=(stop,), name=f"{self.name}-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

        def on_stop() -> None:
            self._stopping.set()
            self._queue.shutdown()

        call_when_set(stop, on_stop)

    def shutdown(self, drain_timeout: float) -> bool:
        """Stop taking keys, let in-flight reconciles finish; False if they outlived the timeout."""
        deadline = time.monotonic() + drain_timeout
        self._stopping.set()
        drained = self._queue.shutdown_with_drain(drain_timeout)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("controller %s: workers still busy after shutdown: %s", self.name, alive)
        return drained and not alive

    @property
    def active_workers(self) -> int:
        return self._active

    def _worker(self, stop: threading.Event) -> None:
        q = self._queue
        while True:
            key = q.get()
            if key is None:
                return
            if self._stopping.is_set() or stop.is_set():
                # Shutting down: do not start new work; the key is re-listed on next start.
                q.done(key)
                continue
            with self._active_lock:
                self._active += 1
                self._m_workers.set(self._active)
            try:
                self._process(key)
            finally:
                with self._active_lock:
                    self._active -= 1
                    self._m_workers.set(self._active)
                q.done(key)

    def _process(self, key: str) -> None:
        q = self._queue
        start = time.monotonic()
        err: BaseException | None
        try:
            result, err = self._reconcile(key)
        except Exception as e:
            # A bug, not an API failure: same handling, with the traceback in the log.
            log.exception("controller %s: reconcile %s raised", self.name, key)
            result, err = Result(), e
        self._m_time.observe(time.monotonic() - start)
        if err is not None:
            self._m_errors.inc()
            self._results["error"].inc()
            if isinstance(err, TerminalError):
                self._m_terminal.inc()
                log.error("controller %s: %s: terminal error, not retried: %s", self.name, key, err)
                q.forget(key)
                return
            log.warning(
                "controller %s: %s: %s: %s (attempt %d, retrying)",
                self.name,
                key,
                type(err).__name__,
                err,
                q.num_requeues(key) + 1,
            )
            q.add_rate_limited(key, item_delay=self._error_requeue)
            return
        if result.requeue_after is not None and result.requeue_after > 0:
            self._results["requeue_after"].inc()
            q.forget(key)
            q.add_after(key, result.requeue_after)
        elif result.requeue:
            self._results["requeue"].inc()
            q.add_rate_limited(key)
        else:
            self._results["success"].inc()
            q.forget(key)
