"""--leader-elect (one active replica, hand-over on SIGTERM) and the `full` cache mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentic_operator.kube import KubeClient
from tests.conftest import wait_until
from tests.operator._helpers import caches_only
from tests.operator.conftest import (
    new_session,
    phase,
    sample,
    start_operator_process,
)

pytestmark = pytest.mark.cluster

LEASE = "agentic-operator.vteam.ambient-code"


def _holder(kube: KubeClient, ns: str) -> str:
    lease: dict[str, Any] = (
        kube.get_or_none(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}") or {}
    )
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.node
def test_leader_election_hands_over_on_sigterm(
    kube: KubeClient, project: str, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    # The Lease lives in the operator's namespace (env NAMESPACE), here a fresh unmanaged one.
    env = {"NAMESPACE": namespace}
    first = start_operator_process(kubeconfig, tmp_path, env=env, args=["--leader-elect"])
    second = None
    try:
        wait_until(
            lambda: _holder(kube, namespace).endswith(f"_{first.pid}"),
            timeout=30,
            what="first leads",
        )
        second = start_operator_process(kubeconfig, tmp_path, env=env, args=["--leader-elect"])
        new_session(kube, project, "led-1", env={"RUNNER_EXIT_AFTER": "1"})
        wait_until(
            lambda: phase(kube, project, "led-1") == "Completed",
            timeout=90,
            what="led-1 done",
        )
        assert _holder(kube, namespace).endswith(f"_{first.pid}")
        # The follower reconciled nothing: no session series at all.
        assert "\nambient_sessions_total{" not in second.metrics()
        assert sample(first.metrics(), "ambient_sessions_total", namespace=project) == 1

        assert first.terminate() < 5.0
        wait_until(
            lambda: _holder(kube, namespace).endswith(f"_{second.pid}"),
            timeout=30,
            what="second leads",
        )
        new_session(kube, project, "led-2", env={"RUNNER_EXIT_AFTER": "1"})
        wait_until(
            lambda: phase(kube, project, "led-2") == "Completed",
            timeout=90,
            what="led-2 done",
        )
    finally:
        first.terminate()
        if second is not None:
            second.terminate()


def test_full_cache_mode_stores_whole_objects(
    kube: KubeClient, project: str, namespace: str, kubeconfig: Path
) -> None:
    new_session(kube, project, "raw")
    new_session(kube, namespace, "raw-unmanaged")
    with caches_only(kubeconfig, cache_mode="full") as holder:
        cached = holder.op.sessions.get(f"{project}/raw")
        assert isinstance(cached, dict) and cached["spec"]["initialPrompt"] == "test"
        # Like the unfixed upstream operator: unmanaged namespaces are cached too ...
        assert holder.op.sessions.get(f"{namespace}/raw-unmanaged") is not None
        # ... but still never reconciled.
        holder.op.session_reconciler(f"{namespace}/raw-unmanaged")
        obj = kube.get_or_none(
            f"/apis/vteam.ambient-code/v1alpha1/namespaces/{namespace}/agenticsessions/raw-unmanaged",
        )
        assert obj is not None and not obj.get("status")
