"""The AgenticSession lifecycle with real runner pods on the local node.

The runner image (cluster/images/runner.sh) is steered through the session's
environmentVariables: RUNNER_EXIT_AFTER / RUNNER_EXIT_CODE end it, RUNNER_ALLOCATE=1 makes
it allocate until the kernel OOM-kills it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from agentic_operator._kube import KubeClient
from tests.conftest import wait_until
from tests.operator.conftest import (
    RUNNER_IMAGE,
    OperatorProcess,
    get_or_none,
    get_session,
    new_session,
    phase,
    sessions_path,
    settings_path,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in obj["status"].get("conditions", []):
        if c["type"] == ctype:
            return c
    raise AssertionError(f"no {ctype} condition in {obj['status']}")


def _wait_phase(
    kube: KubeClient, ns: str, name: str, want: str, timeout: float = 90
) -> dict[str, Any]:
    wait_until(lambda: phase(kube, ns, name) == want, timeout=timeout, what=f"{name} {want}")
    obj = get_session(kube, ns, name)
    assert obj is not None
    return obj


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def test_session_runs_then_completes(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    session = new_session(kube, ns, "done", env={"RUNNER_EXIT_AFTER": "6", "RUNNER_EXIT_CODE": "0"})
    uid = session["metadata"]["uid"]
    running = _wait_phase(kube, ns, "done", "Running", timeout=60)
    assert running["status"]["startTime"]
    assert running["status"]["observedGeneration"] == running["metadata"]["generation"]
    assert _cond(running, "Ready")["status"] == "True"
    assert _cond(running, "RunnerStarted")["status"] == "True"
    assert _cond(running, "PodCreated")["status"] == "True"

    pod = kube.get(f"/api/v1/namespaces/{ns}/pods/done-runner")
    assert pod["metadata"]["labels"] == {"app": "ambient-code-runner", "agentic-session": "done"}
    assert pod["metadata"]["ownerReferences"][0]["uid"] == uid
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["image"] == RUNNER_IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["serviceAccountName"] == "ambient-session-done"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AGENTIC_SESSION_NAME"] == "done" and env["INITIAL_PROMPT"] == "test"
    assert env["RUNNER_EXIT_AFTER"] == "6"

    svc = kube.get(f"/api/v1/namespaces/{ns}/services/session-done")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["agui"]
    sa = kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/ambient-session-done")
    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/ambient-runner-token-done")
    assert base64.b64decode(secret["data"]["k8s-token"])
    assert "ambient-code.io/token-refreshed-at" in secret["metadata"]["annotations"]
    for obj in (svc, sa, secret):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid

    done = _wait_phase(kube, ns, "done", "Completed", timeout=60)
    assert done["status"]["completionTime"] >= done["status"]["startTime"]
    assert _cond(done, "Ready")["status"] == "False"
    metrics = operator_process.metrics()
    assert 'ambient_sessions_completed_total{final_phase="Completed"}' in metrics
    assert (
        'ambient_session_phase_transitions_total{from_phase="Creating",to_phase="Running"}'
        in metrics
    )
    assert "ambient_session_startup_duration_seconds_count" in metrics


def test_runner_failure_fails_the_session_with_a_reason(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "bad", env={"RUNNER_EXIT_AFTER": "1", "RUNNER_EXIT_CODE": "3"})
    failed = _wait_phase(kube, ns, "bad", "Failed", timeout=90)
    ready = _cond(failed, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "Error"
    assert "exit code 3" in ready["message"]
    assert failed["status"]["completionTime"]


def test_stop_then_restart(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "ctl")
    _wait_phase(kube, ns, "ctl", "Running", timeout=60)
    first_pod = kube.get(f"/api/v1/namespaces/{ns}/pods/ctl-runner")["metadata"]["uid"]

    kube.patch(
        sessions_path(ns, "ctl"),
        {"metadata": {"annotations": {"ambient-code.io/desired-phase": "Stopped"}}},
    )
    stopped = _wait_phase(kube, ns, "ctl", "Stopped", timeout=60)
    assert stopped["status"]["stoppedReason"] == "user"
    assert stopped["status"]["completionTime"]
    assert _cond(stopped, "RunnerStarted")["reason"] == "UserStopped"
    wait_until(
        lambda: (
            "ambient-code.io/desired-phase" not in _annotations(get_session(kube, ns, "ctl") or {})
        ),
        timeout=30,
        what="desired-phase cleared after stop",
    )
    wait_until(
        lambda: get_or_none(kube, f"/api/v1/namespaces/{ns}/pods/ctl-runner") is None,
        timeout=60,
        what="runner pod deleted",
    )

    kube.patch(
        sessions_path(ns, "ctl"),
        {"metadata": {"annotations": {"ambient-code.io/desired-phase": "Running"}}},
    )
    wait_until(
        lambda: phase(kube, ns, "ctl") in ("Pending", "Creating", "Running"),
        timeout=30,
        what="restart",
    )
    restarted = _wait_phase(kube, ns, "ctl", "Running", timeout=60)
    assert "completionTime" not in restarted["status"]
    assert "stoppedReason" not in restarted["status"]
    wait_until(
        lambda: (
            "ambient-code.io/desired-phase" not in _annotations(get_session(kube, ns, "ctl") or {})
        ),
        timeout=30,
        what="desired-phase cleared after restart",
    )
    second_pod = kube.get(f"/api/v1/namespaces/{ns}/pods/ctl-runner")["metadata"]["uid"]
    assert second_pod != first_pod
    metrics = operator_process.metrics()
    assert (
        'ambient_session_phase_transitions_total{from_phase="Stopped",to_phase="Pending"}'
        in metrics
    )


def test_restart_records_restarting_condition(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "again", env={"RUNNER_EXIT_AFTER": "4"})
    first = _wait_phase(kube, ns, "again", "Completed", timeout=60)
    rv = first["metadata"]["resourceVersion"]
    kube.patch(
        sessions_path(ns, "again"),
        {"metadata": {"annotations": {"ambient-code.io/desired-phase": "Running"}}},
    )
    # Every status the operator writes, in order, straight from a watch.
    history: list[tuple[str, str]] = []
    stream = kube.watch(
        sessions_path(ns),
        params={
            "fieldSelector": "metadata.name=again",
            "resourceVersion": rv,
            "timeoutSeconds": "90",
        },
    )
    try:
        for _etype, obj in stream:
            status = obj.get("status") or {}
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            history.append((status.get("phase", ""), ready.get("reason", "")))
            if (
                status.get("phase") == "Completed"
                and status.get("startTime") != first["status"]["startTime"]
            ):
                break
    finally:
        stream.close()
    assert ("Pending", "Restarting") in history, history
    phases = [p for p, _ in history]
    assert "Running" in phases, history
    assert phases.index("Pending") < phases.index("Running") < len(phases) - 1, history
    assert phases[-1] == "Completed"


def test_inactivity_stops_an_idle_session(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "idle", inactivityTimeout=8)
    _wait_phase(kube, ns, "idle", "Running", timeout=60)
    time.sleep(1)
    assert phase(kube, ns, "idle") == "Running"
    time.sleep(8)
    # Any event brings the session back into the queue (otherwise the 30 s Running requeue would).
    kube.patch(sessions_path(ns, "idle"), {"metadata": {"labels": {"poke": "1"}}})
    stopped = _wait_phase(kube, ns, "idle", "Stopped", timeout=60)
    assert stopped["status"]["stoppedReason"] == "inactivity"
    assert _cond(stopped, "RunnerStarted")["reason"] == "InactivityTimeout"
    wait_until(
        lambda: (
            not {"ambient-code.io/desired-phase", "ambient-code.io/stop-reason"}
            & set(_annotations(get_session(kube, ns, "idle") or {}))
        ),
        timeout=30,
        what="stop annotations cleared",
    )


def test_project_timeout_applies_and_zero_disables(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    wait_until(
        lambda: get_or_none(kube, settings_path(ns, "projectsettings")), timeout=30, what="settings"
    )
    kube.patch(settings_path(ns, "projectsettings"), {"spec": {"inactivityTimeoutSeconds": 8}})
    new_session(kube, ns, "proj")
    new_session(kube, ns, "never", inactivityTimeout=0)
    _wait_phase(kube, ns, "proj", "Running", timeout=60)
    _wait_phase(kube, ns, "never", "Running", timeout=60)
    time.sleep(9)
    for name in ("proj", "never"):
        kube.patch(sessions_path(ns, name), {"metadata": {"labels": {"poke": "1"}}})
    stopped = _wait_phase(kube, ns, "proj", "Stopped", timeout=60)
    assert stopped["status"]["stoppedReason"] == "inactivity"
    time.sleep(2)
    assert phase(kube, ns, "never") == "Running"


def test_unmanaged_namespace_is_skipped(
    kube: KubeClient, namespace: str, operator_process: OperatorProcess
) -> None:
    new_session(kube, namespace, "ignored")
    time.sleep(4)
    obj = get_session(kube, namespace, "ignored")
    assert obj is not None and not obj.get("status")
    assert get_or_none(kube, f"/api/v1/namespaces/{namespace}/pods/ignored-runner") is None


def test_deleted_runner_pod_is_recreated(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "phoenix")
    _wait_phase(kube, ns, "phoenix", "Running", timeout=60)
    old = kube.get(f"/api/v1/namespaces/{ns}/pods/phoenix-runner")["metadata"]["uid"]
    kube.delete(f"/api/v1/namespaces/{ns}/pods/phoenix-runner", params={"gracePeriodSeconds": "0"})

    def new_pod_running() -> bool:
        pod = get_or_none(kube, f"/api/v1/namespaces/{ns}/pods/phoenix-runner")
        return bool(
            pod and pod["metadata"]["uid"] != old and phase(kube, ns, "phoenix") == "Running"
        )

    wait_until(new_pod_running, timeout=90, what="runner pod recreated and session Running again")
