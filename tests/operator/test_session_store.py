"""The compact session cache: what survives the transform, and what it costs."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from typing import Any

import pytest

from agentic_operator._session_store import (
    SessionStore,
    SessionView,
    transform_full,
    transform_lean,
    view,
)
from agentic_operator.contract import AGENTIC_SESSIONS, API_VERSION

pytestmark = pytest.mark.unit


def session(ns: str, name: str, phase: str, **extra: Any) -> dict[str, Any]:
    ann = extra.pop("annotations", {})
    return {
        "apiVersion": API_VERSION,
        "kind": AGENTIC_SESSIONS.kind,
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "123456",
            "generation": 2,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "annotations": ann,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            **extra,
        },
        "spec": {"initialPrompt": "p" * 4000, "repos": [{"url": "https://x"}]},
        "status": {
            "phase": phase,
            "startTime": "2025-01-01T00:01:00Z",
            "conditions": [{"type": "Ready"}],
        },
    }


def test_terminal_session_is_packed_and_keeps_what_reconcile_needs() -> None:
    obj = session("ns", "s1", "Completed", annotations={"ambient-code.io/desired-phase": "Running"})
    value = transform_lean(obj)
    assert isinstance(value, bytes) and len(value) == 25
    v = view(value)
    assert v.uid == obj["metadata"]["uid"]
    assert v.resource_version == "123456"
    assert v.phase == "Completed" and v.desired_phase == "Running" and not v.deleting


def test_deletion_mark_survives() -> None:
    obj = session("ns", "s1", "Failed", deletionTimestamp="2025-01-02T00:00:00Z")
    assert view(transform_lean(obj)).deleting


def test_active_session_keeps_small_view() -> None:
    obj = session("ns", "s1", "Running")
    obj["spec"]["inactivityTimeout"] = 60
    v = transform_lean(obj)
    assert isinstance(v, SessionView)
    assert v.inactivity_timeout == 60 and v.generation == 2 and v.start_time is not None


def test_unpackable_values_fall_back_to_view() -> None:
    obj = session("ns", "s1", "Stopped", annotations={"ambient-code.io/desired-phase": "Weird"})
    assert isinstance(transform_lean(obj), SessionView)
    obj = session("ns", "s1", "Stopped")
    obj["metadata"]["resourceVersion"] = "abc"
    assert isinstance(transform_lean(obj), SessionView)


def test_full_mode_keeps_everything() -> None:
    obj = session("ns", "s1", "Completed")
    assert transform_full(obj) is obj
    assert view(obj).phase == "Completed"


def test_store_protocol() -> None:
    s = SessionStore()
    s.put("a/x", b"1")
    s.put("a/y", b"2")
    s.put("b/x", b"3")
    s.put("a/x", b"4")
    assert len(s) == 3
    assert sorted(s.keys()) == ["a/x", "a/y", "b/x"]
    assert s.get("a/x") == b"4"
    assert s.delete("a/x") == b"4"
    assert s.delete("a/x") is None
    assert s.get("zz/x") is None
    s.delete("b/x")
    assert s.namespaces() == 1 and len(s) == 1


def test_marginal_cost_per_terminal_session_is_small() -> None:
    def fill(store: SessionStore, n_ns: int, per_ns: int, offset: int) -> None:
        for n in range(n_ns):
            ns = f"oom-repro-{n + offset:04d}"
            for i in range(per_ns):
                obj = session(ns, f"session-{n:04d}-{i:03d}", "Completed")
                store.put(f"{ns}/{obj['metadata']['name']}", transform_lean(obj))

    store = SessionStore()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill(store, 200, 10, 0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_session = (after - before) / 2000
    assert per_session < 200, per_session


def test_store_switches_between_blob_and_dict_without_losing_entries() -> None:
    import random

    rng = random.Random(7)
    store = SessionStore()
    model: dict[str, object] = {}
    names = [f"ns{n}/session-{i:03d}" for n in range(3) for i in range(80)]
    for step in range(6000):
        key = rng.choice(names)
        op = rng.random()
        if op < 0.5:
            value: object = transform_lean(
                session(key.split("/")[0], key.split("/")[1], "Completed")
            )
        elif op < 0.65:
            value = transform_lean(session(key.split("/")[0], key.split("/")[1], "Running"))
        else:
            assert store.delete(key) == model.pop(key, None), step
            continue
        store.put(key, value)  # type: ignore[arg-type]
        model[key] = value
        assert store.get(key) == value
    assert len(store) == len(model)
    assert sorted(store.keys()) == sorted(model)
    for key, value in model.items():
        assert store.get(key) == value
