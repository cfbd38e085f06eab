"""The operator as a process: probes, metrics, conditions under churn, SIGTERM, a real OOM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agentic_operator._session_store import view
from agentic_operator.contract import AGENTIC_SESSIONS, PROJECT_SETTINGS
from agentic_operator.kube import KubeClient
from tests.conftest import wait_until
from tests.operator._helpers import caches_only
from tests.operator.conftest import (
    OperatorProcess,
    get_session,
    new_session,
    phase,
    sample,
    start_operator_process,
)

pytestmark = pytest.mark.cluster

UPSTREAM_METRICS = (
    "ambient_session_startup_duration_seconds",
    "ambient_sessions_total",
    "ambient_sessions_completed_total",
    "ambient_session_phase_transitions_total",
    "ambient_reconcile_duration_seconds",
    "ambient_pod_creation_duration_seconds",
    "ambient_token_provision_duration_seconds",
    "ambient_session_errors_total",
)


def test_probes_and_metrics(operator_process: OperatorProcess) -> None:
    assert operator_process.get("/healthz") == (200, "ok")
    assert operator_process.get("/readyz") == (200, "ok")
    text = operator_process.metrics()
    for name in UPSTREAM_METRICS:
        assert f"# TYPE {name} " in text, name
    for name in (
        "ambient_runner_oom_kills_total",
        "ambient_runner_unobserved_restarts_total",
        "agentic_operator_cache_objects",
        "workqueue_depth",
        "workqueue_queue_duration_seconds",
        "process_resident_memory_bytes",
    ):
        assert f"# TYPE {name} " in text, name
    rss = sample(text, "process_resident_memory_bytes")
    assert rss is not None and 5 * 2**20 < rss < 200 * 2**20
    assert sample(text, "agentic_operator_cache_objects", informer="agenticsessions") is not None


def test_sigterm_exits_within_five_seconds(
    kube: KubeClient, project: str, kubeconfig: Path, tmp_path: Path
) -> None:
    op = start_operator_process(kubeconfig, tmp_path)
    try:
        for i in range(5):
            new_session(kube, project, f"busy-{i}")
        wait_until(
            lambda: phase(kube, project, "busy-4") != "",
            timeout=30,
            what="work under way",
        )
    finally:
        took = op.terminate(timeout=15)
    assert op.proc.returncode == 0, op.log()
    assert took < 5.0, took
    assert "agentic-operator stopped" in op.log()


def test_sigint_exits_cleanly(kubeconfig: Path, kube: KubeClient, tmp_path: Path) -> None:
    op = start_operator_process(kubeconfig, tmp_path)
    t0 = time.monotonic()
    os.kill(op.pid, signal.SIGINT)
    op.proc.wait(10)
    assert time.monotonic() - t0 < 5.0
    assert op.proc.returncode == 0


@pytest.mark.node
@pytest.mark.slow
def test_conditions_stay_one_per_type_after_1000_reconciles(
    kube: KubeClient, project: str, kubeconfig: Path
) -> None:
    ns = project
    with caches_only(kubeconfig) as holder:
        new_session(kube, ns, "churn")
        key = f"{ns}/churn"
        reconcile = holder.op.session_reconciler
        wait_until(lambda: holder.op.sessions.get(key) is not None, timeout=20, what="cached")

        def running() -> bool:
            reconcile(key)
            return phase(kube, ns, "churn") == "Running"

        wait_until(running, timeout=60, interval=0.5, what="Running")
        first = get_session(kube, ns, "churn")
        assert first is not None
        ready_since = next(c for c in first["status"]["conditions"] if c["type"] == "Ready")[
            "lastTransitionTime"
        ]
        writes = 0
        for _ in range(1000):
            # Another writer knocks the phase back; each reconcile must write it again.
            obj = kube.get(AGENTIC_SESSIONS.path(ns, "churn"))
            obj["status"]["phase"] = "Creating"
            kube.replace(AGENTIC_SESSIONS.path(ns, "churn", "status"), obj)
            wait_until(
                lambda: view(holder.op.sessions.get(key)).phase == "Creating",  # type: ignore[arg-type]
                timeout=10,
                interval=0.002,
                what="cache sees Creating",
            )
            reconcile(key)
            writes += 1
        final = get_session(kube, ns, "churn")
        assert final is not None
        assert final["status"]["phase"] == "Running"
        types = [c["type"] for c in final["status"]["conditions"]]
        assert len(types) == len(set(t.lower() for t in types)) <= 8, types
        ready = next(c for c in final["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert ready["lastTransitionTime"] == ready_since  # status never changed
        reg = holder.op.metrics.registry
        transitions = reg.get_sample_value(
            "ambient_session_phase_transitions_total",
            {"namespace": ns, "from_phase": "Creating", "to_phase": "Running"},
        )
        assert transitions == writes + 1


@pytest.mark.node
def test_real_oom_killed_runner_is_counted(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    wait_until(
        lambda: (
            (kube.get_or_none(PROJECT_SETTINGS.path(ns, "projectsettings")) or {})
            .get("status", {})
            .get("limitRangeReady")
        ),
        timeout=30,
        what="LimitRange ready",
    )
    # A small default limit for this namespace only, so the allocating runner dies quickly.
    # The LimitRange is the operator's: a ProjectSettings reconcile still in flight (the one
    # its own status write triggered) would put the default back, and the runner would then
    # finish its 512 MiB read and complete. So the patch must be seen to hold.
    limits = f"/api/v1/namespaces/{ns}/limitranges/ambient-default-limits"
    small = {
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"memory": "24Mi"},
                    "defaultRequest": {"memory": "16Mi"},
                }
            ]
        }
    }

    def small_limit_holds() -> bool:
        kube.patch(limits, small)
        time.sleep(2)
        current = kube.get(limits)["spec"]["limits"][0].get("default", {})
        return current.get("memory") == "24Mi"

    wait_until(small_limit_holds, timeout=60, interval=0.5, what="24Mi default limit holds")
    new_session(kube, ns, "hog", env={"RUNNER_ALLOCATE": "1"})
    wait_until(
        lambda: phase(kube, ns, "hog") == "Failed", timeout=120, what="OOM-killed session Failed"
    )
    obj = get_session(kube, ns, "hog")
    assert obj is not None
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "OOMKilled", ready
    wait_until(
        lambda: (
            sample(operator_process.metrics(), "ambient_runner_oom_kills_total", namespace=ns) == 1
        ),
        timeout=30,
        what="oom metric",
    )
