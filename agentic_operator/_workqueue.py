"""A rate-limited, delaying work queue with client-go semantics, in pure stdlib.

Reconcilers are written as "look at the current state of key K and fix it", which is only
safe if the same key is never reconciled by two workers at once and a burst of events for
one key collapses into one reconcile. This queue gives exactly that (dirty set +
processing set, as client-go's workqueue), plus per-item exponential backoff max'ed with a
global token bucket so a failing apiserver is not hammered, and delayed requeues whose
heap coalesces per key so it cannot grow without bound.

There is no timer thread: workers blocked in `get()` wait until the next delayed item is
due and promote it themselves.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Protocol

__all__ = ["QueueHooks", "TokenBucket", "WorkQueue"]


class QueueHooks(Protocol):
    """Hooks the queue reports into (`_metrics.QueueMetrics` implements them)."""

    def add(self) -> None: ...
    def depth(self, depth: int) -> None: ...
    def latency(self, seconds: float) -> None: ...
    def work_duration(self, seconds: float) -> None: ...
    def retry(self) -> None: ...


class TokenBucket:
    """golang.org/x/time/rate semantics: reservations may drive the balance negative."""

    def __init__(self, *, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.qps


class WorkQueue:
    """Keys in, keys out; see module docstring for the guarantees."""

    def __init__(
        self,
        *,
        name: str,
        base_delay: float = 0.005,
        max_delay: float = 300.0,
        qps: float = 50.0,
        burst: int = 300,
        metrics: QueueHooks | None = None,
    ) -> None:
        self.name = name
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._bucket = TokenBucket(qps=qps, burst=burst)
        self._metrics = metrics
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        # key -> monotonic time it entered the ready queue (for the latency metric)
        self._queued_at: dict[str, float] = {}
        # key -> monotonic time a worker took it (for the work-duration metric)
        self._started_at: dict[str, float] = {}
        # delayed items: heap of (ready_at, seq, key); `_waiting` holds the live ready time
        # per key, heap entries that disagree with it are stale and skipped.
        self._heap: list[tuple[float, int, str]] = []
        self._waiting: dict[str, float] = {}
        self._seq = 0
        self._failures: dict[str, int] = {}
        self._shutting_down = False
        self.adds_total = 0
        self.retries_total = 0

    # -- adding --------------------------------------------------------------------------------

    def add(self, key: str) -> None:
        """Queue `key` now; a no-op if it is already queued, re-queued once if in flight."""
        with self._cond:
            self._add_locked(key, time.monotonic())

    def _add_locked(self, key: str, now: float) -> None:
        if self._shutting_down:
            return
        if key in self._dirty:
            return
        self.adds_total += 1
        if self._metrics is not None:
            self._metrics.add()
        self._dirty.add(key)
        if key in self._processing:
            # Picked up again by done(); never handed to a second worker meanwhile.
            return
        self._queue.append(key)
        self._queued_at[key] = now
        self._report_depth()
        self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending time for the key wins."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            ready = time.monotonic() + delay
            cur = self._waiting.get(key)
            if cur is not None and cur <= ready:
                return
            self._waiting[key] = ready
            self._seq += 1
            heapq.heappush(self._heap, (ready, self._seq, key))
            if len(self._heap) > 2 * len(self._waiting) + 64:
                self._compact_heap()
            # Waiting workers recompute how long to sleep.
            self._cond.notify_all()

    def _compact_heap(self) -> None:
        self._heap = [e for e in self._heap if self._waiting.get(e[2]) == e[0]]
        heapq.heapify(self._heap)

    def when(self, key: str, *, item_delay: float | None = None) -> float:
        """Record a failure of `key` and return its backoff (per-item max'ed with global)."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        if item_delay is None:
            # Cap the exponent so 2**n never overflows for a key failing for days.
            item_delay = min(self._base_delay * (2 ** min(n, 62)), self._max_delay)
        return max(item_delay, self._bucket.reserve())

    def add_rate_limited(self, key: str, *, item_delay: float | None = None) -> None:
        """Requeue after a failure: exponential per key (or `item_delay`), globally limited."""
        delay = self.when(key, item_delay=item_delay)
        self.retries_total += 1
        if self._metrics is not None:
            self._metrics.retry()
        self.add_after(key, delay)

    def forget(self, key: str) -> None:
        """Reset the failure count of `key` (it succeeded or no longer exists)."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # -- taking ----------------------------------------------------------------------------------

    def _promote_due_locked(self, now: float) -> float | None:
        """Move due delayed items into the queue; return seconds until the next one."""
        while self._heap:
            ready, _, key = self._heap[0]
            if self._waiting.get(key) != ready:
                heapq.heappop(self._heap)
                continue
            if ready > now:
                return ready - now
            heapq.heappop(self._heap)
            del self._waiting[key]
            self._add_locked(key, now)
        return None

    def get(self, timeout: float | None = None) -> str | None:
        """Next key to process, or None on timeout, or when shut down and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                next_due = None if self._shutting_down else self._promote_due_locked(now)
                if self._queue:
                    break
                if self._shutting_down:
                    return None
                wait = next_due
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            queued = self._queued_at.pop(key, now)
            self._started_at[key] = now
            self._report_depth()
        if self._metrics is not None:
            self._metrics.latency(now - queued)
        return key

    def done(self, key: str) -> None:
        """Mark `key` finished; if it was added meanwhile, it is queued again now."""
        with self._cond:
            self._processing.discard(key)
            started = self._started_at.pop(key, None)
            if key in self._dirty:
                self._queue.append(key)
                self._queued_at[key] = time.monotonic()
                self._report_depth()
                self._cond.notify()
            if not self._processing:
                self._cond.notify_all()
        if started is not None and self._metrics is not None:
            self._metrics.work_duration(time.monotonic() - started)

    def _report_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.depth(len(self._queue))

    # -- shutdown --------------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Refuse new adds, drop delayed items, wake all workers.

        As in client-go, keys already queued are still handed out by `get()`; workers that
        want to stop sooner check `shutting_down` themselves.
        """
        with self._cond:
            self._shutting_down = True
            self._heap.clear()
            self._waiting.clear()
            self._cond.notify_all()

    def shutdown_with_drain(self, timeout: float) -> bool:
        """Shut down, then wait until no key is being processed; False on timeout."""
        self.shutdown()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._processing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- introspection -----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Ready depth (delayed items are not counted, as in client-go)."""
        return len(self._queue)

    @property
    def delayed(self) -> int:
        return len(self._waiting)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def idle(self) -> bool:
        """Nothing queued, in flight or delayed."""
        with self._cond:
            return not (self._queue or self._processing or self._waiting)
