"""Inactivity auto-stop: which timeout applies to a session and whether it has expired.

Precedence is upstream's: the session's spec.inactivityTimeout, else its project's
ProjectSettings inactivityTimeoutSeconds, else DEFAULT_INACTIVITY_TIMEOUT, else 86400 s;
0 turns auto-stop off. Upstream cached the project value per namespace in a map that was
never pruned; this cache has a TTL and a size cap, so it is bounded by construction.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from agentic_operator._session_store import SessionView

__all__ = ["ProjectTimeoutCache", "idle_since", "resolve_timeout", "should_auto_stop"]

_MISSING = -1


class ProjectTimeoutCache:
    """namespace -> project inactivity timeout (None: not set), TTL + LRU size bound."""

    def __init__(
        self,
        *,
        loader: Callable[[str], int | None],
        ttl_seconds: float = 300.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def get(self, namespace: str) -> int | None:
        now = self._clock()
        with self._lock:
            hit = self._entries.get(namespace)
            if hit is not None and now - hit[1] < self._ttl:
                self._entries.move_to_end(namespace)
                return None if hit[0] == _MISSING else hit[0]
        value = self._loader(namespace)
        with self._lock:
            self._entries[namespace] = (_MISSING if value is None else value, now)
            self._entries.move_to_end(namespace)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value

    def invalidate(self, namespace: str) -> None:
        with self._lock:
            self._entries.pop(namespace, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def resolve_timeout(session: SessionView, *, project: int | None, fallback: int) -> int:
    if session.inactivity_timeout is not None:
        return session.inactivity_timeout
    if project is not None:
        return project
    return fallback


def idle_since(session: SessionView) -> float | None:
    """lastActivityTime, else startTime, else creationTimestamp (epoch seconds)."""
    for t in (session.last_activity, session.start_time, session.created):
        if t is not None:
            return t
    return None


def should_auto_stop(session: SessionView, *, timeout: int, now: float) -> bool:
    if session.phase != "Running" or timeout == 0:
        return False
    since = idle_since(session)
    return since is not None and now - since > timeout
