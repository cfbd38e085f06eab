"""Inactivity auto-stop (`_reconcile.inactivity`): precedence, reference time, the cache."""

from __future__ import annotations

from typing import Any

import pytest

from agentic_operator._reconcile.inactivity import (
    ProjectTimeoutCache,
    idle_since,
    resolve_timeout,
    should_auto_stop,
)
from agentic_operator._session_store import SessionView

pytestmark = pytest.mark.unit


_RUNNING = SessionView(
    uid="u", resource_version="1", phase="Running", desired_phase="", deleting=False, created=1000.0
)


def _view(**kw: Any) -> SessionView:
    """A running session, with the fields in `kw` changed."""
    return _RUNNING._replace(**kw)


def test_timeout_precedence() -> None:
    assert resolve_timeout(_view(inactivity_timeout=5), project=10, fallback=20) == 5
    assert resolve_timeout(_view(inactivity_timeout=0), project=10, fallback=20) == 0
    assert resolve_timeout(_view(), project=10, fallback=20) == 10
    assert resolve_timeout(_view(), project=None, fallback=20) == 20


def test_idle_reference_time_and_auto_stop() -> None:
    assert idle_since(_view(start_time=2000.0, last_activity=3000.0)) == 3000.0
    assert idle_since(_view(start_time=2000.0)) == 2000.0
    assert idle_since(_view()) == 1000.0
    v = _view(start_time=2000.0)
    assert should_auto_stop(v, timeout=100, now=2101.0)
    assert not should_auto_stop(v, timeout=100, now=2099.0)
    assert not should_auto_stop(v, timeout=0, now=1e12)
    assert not should_auto_stop(_view(phase="Creating", start_time=0.0), timeout=1, now=1e12)


def test_project_timeout_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    calls: list[str] = []

    def loader(ns: str) -> int | None:
        calls.append(ns)
        return None if ns == "none" else len(ns)

    cache = ProjectTimeoutCache(loader=loader, ttl_seconds=60, max_entries=3, clock=lambda: now[0])
    assert cache.get("abc") == 3 and cache.get("abc") == 3
    assert cache.get("none") is None and cache.get("none") is None
    assert calls == ["abc", "none"]
    now[0] = 61
    cache.get("abc")
    assert calls[-1] == "abc"
    for ns in ("d", "ee", "fff", "gggg"):
        cache.get(ns)
    assert len(cache) == 3
    cache.invalidate("gggg")
    assert len(cache) == 2
