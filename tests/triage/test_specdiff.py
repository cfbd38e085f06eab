"""triage.specdiff: take back exactly triage's changes, keep another writer's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage.specdiff import changes, lookup, three_way

pytestmark = pytest.mark.unit

_names = st.sampled_from(["A", "B", "C", "LOG", "MODE"])
_values = st.text("xyz01", max_size=3)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    env = draw(st.lists(st.builds(lambda n, v: {"name": n, "value": v}, _names, _values),
                        max_size=4, unique_by=lambda e: e["name"]))  # fmt: skip
    c: dict[str, Any] = {"name": "op", "image": draw(st.sampled_from(["i:1", "i:2"]))}
    if env:
        c["env"] = env
    if draw(st.booleans()):
        c["resources"] = {"limits": {"memory": draw(st.sampled_from(["64Mi", "256Mi"]))}}
    spec: dict[str, Any] = {
        "replicas": draw(st.integers(1, 3)),
        "template": {"spec": {"containers": [c]}},
    }
    if draw(st.booleans()):
        spec["template"]["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    return spec


def triage_changes(spec: dict[str, Any]) -> dict[str, Any]:
    """What a run does: a lower limit, env, a volume and mount, a sidecar."""
    out = copy.deepcopy(spec)
    pod = out["template"]["spec"]
    c = pod["containers"][0]
    c.setdefault("resources", {}).setdefault("limits", {})["memory"] = "128Mi"
    c.setdefault("env", []).append({"name": "TRIAGE", "value": "1"})
    c.setdefault("volumeMounts", []).append({"name": "captures", "mountPath": "/profiles"})
    pod.setdefault("volumes", []).append({"name": "captures", "emptyDir": {}})
    pod["containers"].append({"name": "keeper", "image": "i:1"})
    pod["shareProcessNamespace"] = True
    return out


@given(specs())
def test_taking_back_triages_changes_gives_the_original(original: dict[str, Any]) -> None:
    applied = triage_changes(original)
    restored, conflicts = three_way(original, applied, applied)
    assert restored == original and conflicts == []
    # Idempotent: from the original itself, nothing to take back and nothing in conflict.
    again, conflicts = three_way(original, applied, original)
    assert again == original and conflicts == []


@given(specs(), st.integers(1, 5), _values)
def test_another_writers_changes_survive(
    original: dict[str, Any], replicas: int, value: str
) -> None:
    applied = triage_changes(original)
    theirs = copy.deepcopy(applied)
    theirs["replicas"] = replicas
    c = theirs["template"]["spec"]["containers"][0]
    c["env"].insert(0, {"name": "THEIRS", "value": value})
    c["image"] = "i:9"
    restored, conflicts = three_way(original, applied, theirs)
    expected = copy.deepcopy(original)
    expected["replicas"] = replicas
    ec = expected["template"]["spec"]["containers"][0]
    ec["image"] = "i:9"
    ec["env"] = [{"name": "THEIRS", "value": value}, *ec.get("env", [])]
    assert restored == expected and conflicts == []


def test_a_field_both_changed_keeps_theirs_and_says_so() -> None:
    original = {"template": {"spec": {"containers": [
        {"name": "op", "resources": {"limits": {"memory": "256Mi"}}}]}}}  # fmt: skip
    applied = triage_changes(original)
    theirs = copy.deepcopy(applied)
    theirs["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "512Mi"
    restored, conflicts = three_way(original, applied, theirs)
    assert lookup(restored, ("template", "spec", "containers", "[name=op]", "resources",
                             "limits", "memory")) == "512Mi"  # fmt: skip
    assert [(c.path, c.triage_set, c.now, c.original) for c in conflicts] == [
        ("template.spec.containers[name=op].resources.limits.memory", "128Mi", "512Mi", "256Mi")
    ]
    # Everything else of triage's is gone.
    assert restored["template"]["spec"] == {"containers": [
        {"name": "op", "resources": {"limits": {"memory": "512Mi"}}}]}  # fmt: skip


def test_named_lists_are_compared_by_name_not_index() -> None:
    a = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    b = {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}
    assert changes(a, b) == {}


def _with_sidecar(spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["template"]["spec"]["containers"].append({"name": "py-spy", "image": "p:1", **fields})
    return out


def test_a_sidecar_the_apiserver_defaulted_is_still_triages_to_remove() -> None:
    original = {"template": {"spec": {"containers": [{"name": "op", "image": "i:1"}]}}}
    applied = _with_sidecar(original)
    live = _with_sidecar(original, imagePullPolicy="IfNotPresent",
                         terminationMessagePath="/dev/termination-log")  # fmt: skip
    restored, conflicts = three_way(original, applied, live)
    assert restored == original and conflicts == []


def test_a_sidecar_someone_else_changed_is_kept_whole() -> None:
    original = {"template": {"spec": {"containers": [{"name": "op", "image": "i:1"}]}}}
    applied = _with_sidecar(original)
    live = copy.deepcopy(applied)
    live["template"]["spec"]["containers"][1]["image"] = "p:2"
    restored, conflicts = three_way(original, applied, live)
    assert restored == live  # never a container stripped down to no name
    assert [c.path for c in conflicts] == ["template.spec.containers[name=py-spy]"]
