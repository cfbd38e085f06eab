"""Conditions stay one entry per type with stable transition times, however often written."""

from __future__ import annotations

import pytest

from agentic_operator._conditions import MAX_CONDITIONS, normalize, set_condition

pytestmark = pytest.mark.unit


def test_upsert_is_case_insensitive_and_keeps_one_entry() -> None:
    conds, changed = set_condition(None, ctype="Ready", status="False", reason="A", now="t1")
    assert changed
    conds, changed = set_condition(conds, ctype="ready", status="False", reason="A", now="t2")
    assert len(conds) == 1
    assert conds[0]["lastTransitionTime"] == "t1"


def test_transition_time_moves_only_on_status_change() -> None:
    conds, _ = set_condition(None, ctype="Ready", status="False", reason="A", now="t1")
    conds, changed = set_condition(
        conds, ctype="Ready", status="False", reason="B", message="m", now="t2"
    )
    assert changed and conds[0]["lastTransitionTime"] == "t1" and conds[0]["reason"] == "B"
    conds, changed = set_condition(
        conds, ctype="Ready", status="True", reason="B", message="m", now="t3"
    )
    assert changed and conds[0]["lastTransitionTime"] == "t3"
    _, changed = set_condition(
        conds, ctype="Ready", status="True", reason="B", message="m", now="t4"
    )
    assert not changed


def test_thousand_reconciles_keep_the_array_bounded() -> None:
    conds: list[dict[str, object]] | None = None
    types = ["Ready", "PodCreated", "PodScheduled", "RunnerStarted", "SecretsReady", "Reconciled"]
    for i in range(1000):
        for t in types:
            conds, _ = set_condition(
                conds, ctype=t, status="True" if i % 2 else "False", reason=f"r{i}", now=f"t{i}"
            )
    assert conds is not None
    assert sorted(c["type"] for c in conds) == sorted(types)


def test_bloated_legacy_array_is_collapsed() -> None:
    legacy = [{"type": "Ready", "status": "False", "reason": str(i)} for i in range(300)]
    legacy += [{"type": f"T{i}", "status": "True"} for i in range(40)]
    out = normalize(legacy)
    assert len(out) == MAX_CONDITIONS
    conds, changed = set_condition(legacy, ctype="Ready", status="True", reason="x", now="t")
    assert changed and len(conds) <= MAX_CONDITIONS
    assert sum(1 for c in conds if c["type"] == "Ready") == 1


def test_rejects_invalid_status() -> None:
    with pytest.raises(ValueError):
        set_condition(None, ctype="Ready", status="yes")
