"""--leader-elect (one active replica, hand-over on SIGTERM) and the `full` cache mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentic_operator._kube import KubeClient
from tests.conftest import wait_until
from tests.operator.conftest import (
    get_or_none,
    new_session,
    phase,
    start_in_process,
    start_operator_process,
)

pytestmark = pytest.mark.cluster

LEASE = "agentic-operator.vteam.ambient-code"


def _holder(kube: KubeClient, ns: str) -> str:
    lease: dict[str, Any] = (
        get_or_none(kube, f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}") or {}
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
        assert "ambient_sessions_total 0" in second.metrics()  # the follower reconciled nothing

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
    holder = start_in_process(kubeconfig, controllers=False, cache_mode="full")
    try:
        cached = holder.op.sessions.get(f"{project}/raw")
        assert isinstance(cached, dict) and cached["spec"]["initialPrompt"] == "test"
        # Like the unfixed upstream operator: unmanaged namespaces are cached too ...
        assert holder.op.sessions.get(f"{namespace}/raw-unmanaged") is not None
        # ... but still never reconciled.
        holder.op.session_reconciler(f"{namespace}/raw-unmanaged")
        obj = get_or_none(
            kube,
            f"/apis/vteam.ambient-code/v1alpha1/namespaces/{namespace}/agenticsessions/raw-unmanaged",
        )
        assert obj is not None and not obj.get("status")
    finally:
        holder.close()
