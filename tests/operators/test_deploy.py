"""How `tests/operators/deploy.py` renders a test's copy of a test operator, without a cluster:
moved into the test's namespace, scoped to its namespaces and given loopback ports of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operators.deploy import render

pytestmark = pytest.mark.unit


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    return dict(dep["spec"]["template"]["spec"]["containers"][0])


def _env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def test_a_copy_is_moved_scoped_and_ported() -> None:
    ports = {"health": 41001, "pprof": 41002}
    docs = render(
        "go-informer", "t-home", ports=ports, globs="a-*", selector="x=y", memory_limit="96Mi"
    )
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    (crb,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert crb["metadata"]["name"] == "triage-go-informer-t-home"
    assert crb["subjects"][0]["namespace"] == "t-home"
    c = _deployment(docs)
    env = _env(c)
    assert env["WATCH_NAMESPACES"] == "a-*" and env["NAMESPACE_SELECTOR"] == "x=y"
    assert env["HEALTH_ADDR"] == "127.0.0.1:41001" and env["PPROF_PORT"] == "41002"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert "ENABLE_PPROF" not in env
    assert c["livenessProbe"]["httpGet"] == {"host": "127.0.0.1", "path": "/healthz", "port": 41001}
    assert c["resources"]["limits"]["memory"] == "96Mi"
    assert "command" not in c


def test_kopf_is_scoped_by_its_own_flags() -> None:
    c = _deployment(render("kopf-sessions", "t-home", ports={"health": 41003}, globs="a-*,b-*"))
    assert c["command"][-1] == "--namespace=a-*,b-*"
    assert "--all-namespaces" not in c["command"]
    assert "--liveness=http://127.0.0.1:41003/healthz" in c["command"]
    everywhere = _deployment(render("kopf-sessions", "t-home", ports={"health": 41003}))
    assert everywhere["command"][-1] == "--all-namespaces"
    with pytest.raises(ValueError, match="globs only"):
        render("kopf-sessions", "t-home", ports={"health": 1}, selector="x=y")
    with pytest.raises(ValueError, match="unknown test operator"):
        render("nope", "t-home", ports={"health": 1})
