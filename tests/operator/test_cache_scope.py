"""What enters the caches: only managed namespaces' objects, only runner pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentic_operator._session_store import SessionStore
from agentic_operator.kube import KubeClient
from tests.conftest import wait_until
from tests.operator.conftest import (
    SCOPE_KEY,
    SCOPE_LABELS,
    InProcessOperator,
    create_admitted_pod,
    new_session,
    start_in_process,
)

pytestmark = pytest.mark.cluster


def _pod(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    # Bound to a node that does not exist: the pod is real in the apiserver, nothing runs.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": "no-such-node",
            "containers": [{"name": "c", "image": "localhost/ambient-runner:dev"}],
        },
    }


@pytest.fixture
def scoped(kubeconfig: Path, kube: KubeClient) -> Any:
    holder: InProcessOperator | None = None

    def start() -> InProcessOperator:
        nonlocal holder
        holder = start_in_process(kubeconfig, controllers=False)
        return holder

    yield start
    if holder is not None:
        holder.close()


def test_unrelated_pods_and_unmanaged_namespaces_stay_out(
    kube: KubeClient, project: str, namespace: str, scoped: Any
) -> None:
    managed, unmanaged = project, namespace
    new_session(kube, managed, "in")
    new_session(kube, unmanaged, "out")
    runner = {"app": "ambient-code-runner", "agentic-session": "in"}
    create_admitted_pod(kube, managed, _pod(managed, "in-runner", runner))
    create_admitted_pod(kube, managed, _pod(managed, "unrelated", {"app": "other"}))
    create_admitted_pod(kube, managed, _pod(managed, "wrong-label", {"app": "ambient-runner"}))
    create_admitted_pod(
        kube, unmanaged, _pod(unmanaged, "out-runner", {**runner, "agentic-session": "out"})
    )

    op = scoped().op
    assert op.sessions.get(f"{managed}/in") is not None
    assert op.sessions.get(f"{unmanaged}/out") is None
    assert op.pods.get(f"{managed}/in-runner") is not None
    assert op.pods.get(f"{managed}/unrelated") is None
    assert op.pods.get(f"{managed}/wrong-label") is None  # upstream's filter label
    assert op.pods.get(f"{unmanaged}/out-runner") is None
    assert not [k for k in op.sessions.keys() if k.startswith(unmanaged + "/")]  # noqa: SIM118
    assert isinstance(op.sessions._store, SessionStore)

    # An event for an unmanaged namespace is not admitted either.
    new_session(kube, unmanaged, "out2")
    new_session(kube, managed, "in2")
    wait_until(lambda: op.sessions.get(f"{managed}/in2") is not None, timeout=10, what="in2 cached")
    assert op.sessions.get(f"{unmanaged}/out2") is None

    # Becoming managed lists the namespace in; losing the label evicts it.
    kube.patch(
        f"/api/v1/namespaces/{unmanaged}",
        {"metadata": {"labels": SCOPE_LABELS}},
    )
    wait_until(lambda: op.ctx.managed(unmanaged), timeout=20, what="namespace seen as managed")
    # Objects nobody touches after the label change arrive only through the refill, which
    # runs in the namespace reconciler (controllers are off here): call it.
    op.namespace_reconciler(unmanaged)
    assert op.sessions.get(f"{unmanaged}/out") is not None
    assert op.sessions.get(f"{unmanaged}/out2") is not None
    assert op.pods.get(f"{unmanaged}/out-runner") is not None

    kube.patch(
        f"/api/v1/namespaces/{unmanaged}",
        {"metadata": {"labels": {SCOPE_KEY: None}}},
    )
    wait_until(
        lambda: (
            op.sessions.get(f"{unmanaged}/out") is None
            and op.pods.get(f"{unmanaged}/out-runner") is None
        ),
        timeout=20,
        what="evicted after unlabel",
    )
    assert op.sessions.get(f"{managed}/in") is not None
