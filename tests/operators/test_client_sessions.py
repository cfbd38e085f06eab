"""The client-sessions test operator's own logic without a cluster: what it caches, what it
writes to acknowledge a new session, and which namespaces its globs select."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.operators.client_sessions import client_sessions as cs

pytestmark = pytest.mark.unit


class FakeApi:
    def __init__(self, fail: int | None = None) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        _group, _version, ns, _plural, name, body = args
        if self.fail:
            raise ApiException(status=self.fail, reason="nope")
        self.patches.append((ns, name, body))


def _session(name: str, phase: str | None = None, rv: str = "7") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": rv, "generation": 1},
        "spec": {"initialPrompt": "x" * 100},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def test_client_operator_caches_whole_objects_and_acknowledges_new_ones() -> None:
    api = FakeApi()
    op = cs.Operator(api, None, patterns=[], selector="")
    done = _session("done", "Completed")
    op.handle("ADDED", done)
    op.handle("ADDED", _session("new"))
    assert op.sessions[("ns", "done")] is done  # the object itself, not a summary
    assert len(op.sessions) == 2
    ((ns, name, body),) = api.patches
    assert (ns, name) == ("ns", "new")
    assert body["metadata"] == {"resourceVersion": "7"}  # only the version it saw
    assert body["status"]["phase"] == "Pending"
    assert body["status"]["conditions"][0]["reason"] == cs.ACK_REASON
    op.handle("DELETED", done)
    assert list(op.sessions) == [("ns", "new")]
    assert op.stats()["acknowledged"] == 1 and op.stats()["clusterWide"] is True


@pytest.mark.parametrize("status", [404, 409])
def test_client_operator_lets_a_changed_or_gone_session_be(status: int) -> None:
    op = cs.Operator(FakeApi(fail=status), None, patterns=["a-*"], selector="")
    op.handle("ADDED", _session("new"))
    assert op.acknowledged == 0 and ("ns", "new") in op.sessions


def test_namespace_globs() -> None:
    assert cs.parse_patterns(" a-*, ,b ") == ["a-*", "b"]
    assert cs.matches("a-1", ["a-*"]) and not cs.matches("b-1", ["a-*"])
    assert cs.matches("anything", [])
