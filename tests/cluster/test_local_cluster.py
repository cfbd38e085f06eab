"""The local cluster is a real Kubernetes: real kubelet, real cgroup limits, real OOMKilled.

Everything else in the project is judged against this cluster, so these tests pin what it
must be: the kernel OOM-kills a container over its limit and the kubelet reports it, the
control plane answers as v1.20, `cluster-up` is idempotent, and nothing listens beyond
loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, kubectl, wait_until

STATE = Path(os.environ.get("TRIAGE_CLUSTER_STATE", "/var/lib/triage-local"))
DAEMONS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
)


def _pod(namespace: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "pod", name, "-n", namespace, "-o", "json"))


def _runner_pod(namespace: str, name: str, **container: Any) -> None:
    """A pod of one runner-image container named `name`, with `container`'s extra fields."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": "localhost/ambient-runner:dev",
                    "imagePullPolicy": "Never",
                    **container,
                }
            ]
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))


@pytest.mark.cluster
@pytest.mark.node
def test_container_over_its_memory_limit_is_oomkilled_and_restarts(namespace: str) -> None:
    _runner_pod(
        namespace,
        "hog",
        # busybox `tail /dev/zero` buffers forever looking for a newline.
        env=[{"name": "RUNNER_ALLOCATE", "value": "1"}],
        resources={"limits": {"memory": "32Mi"}},
    )

    def oomkilled_twice() -> dict[str, Any] | None:
        statuses = _pod(namespace, "hog").get("status", {}).get("containerStatuses") or []
        if not statuses:
            return None
        st = statuses[0]
        last = (st.get("lastState") or {}).get("terminated") or {}
        return st if last.get("reason") == "OOMKilled" and st["restartCount"] >= 2 else None

    status = wait_until(oomkilled_twice, timeout=150, interval=1, what="two OOMKills")
    assert status["lastState"]["terminated"]["exitCode"] == 137
    first = status["restartCount"]
    wait_until(
        lambda: _pod(namespace, "hog")["status"]["containerStatuses"][0]["restartCount"] > first,
        timeout=180,
        interval=2,
        what="restartCount to keep rising",
    )


@pytest.mark.cluster
@pytest.mark.node
def test_kubelet_stats_report_container_memory_through_the_apiserver(namespace: str) -> None:
    _runner_pod(namespace, "idle")
    wait_until(
        lambda: _pod(namespace, "idle").get("status", {}).get("phase") == "Running",
        timeout=60,
        what="pod Running",
    )

    def container_stats() -> dict[str, Any] | None:
        summary = json.loads(kubectl("get", "--raw", "/api/v1/nodes/node1/proxy/stats/summary"))
        for pod in summary.get("pods", []):
            if pod["podRef"]["namespace"] == namespace and pod["podRef"]["name"] == "idle":
                for c in pod.get("containers", []):
                    if c["name"] == "idle" and (c.get("memory") or {}).get("workingSetBytes"):
                        return c
        return None

    stats = wait_until(container_stats, timeout=90, interval=2, what="stats for the pod")
    assert 0 < stats["memory"]["workingSetBytes"] < 64 * 2**20
    assert "rssBytes" in stats["memory"]


@pytest.mark.cluster
def test_apiserver_reports_v1_20(kubeconfig: Path) -> None:
    version = json.loads(kubectl("get", "--raw", "/version"))
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "20", "v1.20.2")


@pytest.mark.cluster
def test_crds_are_served_with_the_status_subresource(crds: None) -> None:
    crd = json.loads(kubectl("get", "crd", "agenticsessions.vteam.ambient-code", "-o", "json"))
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert "status" in version["subresources"]
    assert crd["spec"]["names"]["shortNames"] == ["as"]


def _pids() -> dict[str, int]:
    return {d: int((STATE / "pids" / f"{d}.pid").read_text()) for d in DAEMONS}


@pytest.mark.cluster
def test_cluster_up_reuses_a_healthy_cluster(kubeconfig: Path) -> None:
    before = _pids()
    out = subprocess.run(
        ["bash", str(REPO / "cluster" / "up.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "reusing" in out.stderr
    assert out.stdout.strip().endswith(str(kubeconfig))
    assert _pids() == before


@pytest.mark.cluster
def test_every_daemon_listens_on_loopback_only(kubeconfig: Path) -> None:
    pids = set(_pids().values())
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert ours, "no listening sockets found for the cluster's daemons"
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.", "[::1]")), f"listens beyond loopback: {line}"
