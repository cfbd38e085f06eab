"""Informer helpers that need no cluster."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agentic_operator._informer import DictStore, Informer, call_when_set, object_key

pytestmark = pytest.mark.unit


def _inf(path: str) -> Informer[Any]:
    return Informer(None, name="x", path=path, transform=lambda o: o)  # type: ignore[arg-type]


def test_namespaced_path() -> None:
    assert _inf("/api/v1/configmaps").namespaced_path("n") == "/api/v1/namespaces/n/configmaps"
    assert (
        _inf("/apis/vteam.ambient-code/v1alpha1/agenticsessions").namespaced_path("n")
        == "/apis/vteam.ambient-code/v1alpha1/namespaces/n/agenticsessions"
    )
    assert _inf("/api/v1/namespaces/a/pods").namespaced_path("a") == "/api/v1/namespaces/a/pods"
    assert _inf("/api/v1/namespaces/a/pods").namespaced_path("b") is None
    with pytest.raises(ValueError):
        _inf("/api/v1/namespaces/a/pods/p").namespaced_path("a")


def test_object_key() -> None:
    assert object_key({"metadata": {"namespace": "ns", "name": "a"}}) == "ns/a"
    assert object_key({"metadata": {"name": "node1"}}) == "node1"


def test_dict_store() -> None:
    s: DictStore[int] = DictStore()
    s.put("a", 1)
    assert s.get("a") == 1
    assert len(s) == 1
    assert list(s.keys()) == ["a"]
    assert s.delete("a") == 1
    assert s.delete("a") is None
    assert len(s) == 0


def test_call_when_set_runs_once_and_can_unregister() -> None:
    ev = threading.Event()
    calls: list[str] = []
    call_when_set(ev, lambda: calls.append("a"))
    unregister = call_when_set(ev, lambda: calls.append("b"))
    unregister()
    ev.set()
    deadline = time.monotonic() + 2
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert calls == ["a"]


def test_stop_watch_thread_exits_when_nothing_registered() -> None:
    ev = threading.Event()
    before = threading.active_count()
    call_when_set(ev, lambda: None)()
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
