"""Sampling the real operator pod: kubelet stats through the apiserver, its own /metrics via
port-forward (tracked by PID), restart and OOM state."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import KUBECONFIG
from triage.kube import connect
from triage.sampling import Sampler, _epoch, metrics_port


@pytest.mark.unit
def test_metrics_port_comes_from_the_bind_flag_or_the_named_port() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "op", "args": ["--metrics-bind-address=127.0.0.1:18080"]},
                {"name": "side", "ports": [{"name": "metrics", "containerPort": 9100}]},
                {"name": "off", "args": ["--metrics-bind-address=0"]},
            ]
        }
    }
    assert metrics_port(pod, "op") == 18080
    assert metrics_port(pod, "side") == 9100
    assert metrics_port(pod, "off") is None
    assert metrics_port(pod, "missing") is None
    assert _epoch("2026-01-01T00:00:00Z") == 1767225600.0
    assert _epoch(None) is None and _epoch("garbage") is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.cluster
@pytest.mark.node
def test_samples_a_real_operator_pod(operator_namespace: str) -> None:
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    with Sampler(cluster, namespace=operator_namespace, deployment="agentic-operator") as sampler:
        # Fresh stats: the pod has just rolled out and the kubelet's first numbers for a new
        # container are from before the interpreter started.
        first = sampler.sample(fresh_after=time.time())
        assert first.pod.startswith("agentic-operator-")
        assert first.node
        assert first.state == "running" and first.ready
        assert first.working_set_bytes and first.working_set_bytes > 5 * 2**20
        assert first.rss_bytes and first.rss_bytes > 0
        # The operator's own process RSS, read through kubectl port-forward.
        assert first.operator_rss_bytes and first.operator_rss_bytes > 5 * 2**20
        pid = sampler.port_forward_pid
        assert pid is not None and _alive(pid)
        assert first.restart_count == 0 and first.oom_count == 0 and not first.oom_killed
        second = sampler.sample()
        assert second.pod == first.pod
        assert sampler.port_forward_pid == pid, "the forward is reused across samples"
    assert not _alive(pid), "closing the sampler stops its port-forward"
    assert sampler.port_forward_pid is None


@pytest.mark.cluster
def test_missing_operator_pod_is_an_absent_sample(namespace: str) -> None:
    from triage.kube import ApiError

    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    with (
        Sampler(cluster, namespace=namespace, deployment="agentic-operator") as sampler,
        pytest.raises(ApiError),
    ):
        sampler.sample()
