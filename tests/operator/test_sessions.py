"""The AgenticSession lifecycle with real runner pods on the local node.

The runner image (cluster/images/runner.sh) is steered through the session's
environmentVariables: RUNNER_EXIT_AFTER / RUNNER_EXIT_CODE end it, RUNNER_ALLOCATE=1 makes
it allocate until the kernel OOM-kills it.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from agentic_operator.contract import (
    AGENTIC_SESSIONS,
    DESIRED_PHASE_ANNOTATION,
    PROJECT_SETTINGS,
)
from agentic_operator.kube import ConflictError, KubeClient
from agentic_operator.resources import PODS, ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS, SERVICES
from tests.conftest import wait_until
from tests.operator._helpers import caches_only
from tests.operator.conftest import (
    RUNNER_IMAGE,
    OperatorProcess,
    create_parked_runner_pod,
    create_runner_secrets,
    get_session,
    new_session,
    phase,
    sample,
    start_operator_process,
)

DESIRED = DESIRED_PHASE_ANNOTATION

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in obj["status"].get("conditions", []):
        if c["type"] == ctype:
            return c
    raise AssertionError(f"no {ctype} condition in {obj['status']}")


def _wait_phase(
    kube: KubeClient, ns: str, name: str, want: str, timeout: float = 90
) -> dict[str, Any]:
    try:
        wait_until(lambda: phase(kube, ns, name) == want, timeout=timeout, what=f"{name} {want}")
    except pytest.fail.Exception as e:
        # Say where it stuck: the session's status and annotations and its runner pod's.
        obj = get_session(kube, ns, name) or {}
        pod = kube.get_or_none(PODS.path(ns, f"{name}-runner")) or {}
        raise AssertionError(
            f"{e}\nsession status: {obj.get('status')}\nannotations: {_annotations(obj) if obj else None}"
            f"\nrunner pod status: {pod.get('status')}"
        ) from e
    obj = get_session(kube, ns, name)
    assert obj is not None
    return obj


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def _wait_runner_gone(kube: KubeClient, ns: str, name: str, timeout: float = 60) -> None:
    """Neither the runner pod nor its Service is left behind a finished session."""

    def gone() -> bool:
        return (
            kube.get_or_none(PODS.path(ns, f"{name}-runner")) is None
            and kube.get_or_none(SERVICES.path(ns, f"session-{name}")) is None
        )

    wait_until(gone, timeout=timeout, what=f"runner pod and Service of {name} removed")


def _runner_uid(kube: KubeClient, ns: str, name: str) -> str:
    return str(kube.get(PODS.path(ns, f"{name}-runner"))["metadata"]["uid"])


def _running(kube: KubeClient, ns: str, name: str, **spec: Any) -> None:
    """Create session `name` (`spec` added to its spec) and wait until it is Running."""
    new_session(kube, ns, name, **spec)
    _wait_phase(kube, ns, name, "Running", timeout=60)


def _running_runner_uid(kube: KubeClient, ns: str, name: str) -> str:
    """Session `name` made and Running; the uid of its first runner pod, to tell a new one by."""
    _running(kube, ns, name)
    return _runner_uid(kube, ns, name)


def test_session_runs_then_completes(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    session = new_session(
        kube,
        ns,
        "done",
        env={"RUNNER_EXIT_AFTER": "8", "RUNNER_EXIT_CODE": "0"},
        userContext={"userId": "u-7", "displayName": "Dev"},
    )
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
    assert env["RUNNER_EXIT_AFTER"] == "8"

    svc = kube.get(f"/api/v1/namespaces/{ns}/services/session-done")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["agui"]
    assert svc["metadata"]["labels"]["app"] == "ambient-code"
    sa = kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/ambient-session-done")
    assert sa["metadata"]["labels"] == {"app": "ambient-runner"}
    assert sa["metadata"]["annotations"]["ambient-code.io/created-by-user-id"] == "u-7"
    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/ambient-runner-token-done")
    assert secret["metadata"]["labels"] == {"app": "ambient-runner-token"}
    assert base64.b64decode(secret["data"]["k8s-token"])
    assert "ambient-code.io/token-refreshed-at" in secret["metadata"]["annotations"]
    role = kube.get(ROLES.path(ns, "ambient-session-done-role"))
    assert {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews"],
        "verbs": ["create"],
    } in role["rules"]
    rb = kube.get(ROLE_BINDINGS.path(ns, "ambient-session-done-rb"))
    assert rb["subjects"][0]["name"] == "ambient-session-done"
    for obj in (svc, sa, secret, role, rb):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    ann = _annotations(get_session(kube, ns, "done") or {})
    assert ann["ambient-code.io/runner-token-secret"] == "ambient-runner-token-done"
    assert ann["ambient-code.io/runner-sa"] == "ambient-session-done"

    done = _wait_phase(kube, ns, "done", "Completed", timeout=60)
    assert done["status"]["completionTime"] >= done["status"]["startTime"]
    assert _cond(done, "Ready")["status"] == "False"
    _wait_runner_gone(kube, ns, "done")
    metrics = operator_process.metrics()
    assert (
        sample(metrics, "ambient_sessions_completed_total", namespace=ns, final_phase="Completed")
        == 1
    )
    assert (
        sample(
            metrics,
            "ambient_session_phase_transitions_total",
            namespace=ns,
            from_phase="Creating",
            to_phase="Running",
        )
        == 1
    )
    assert "ambient_session_startup_duration_seconds_count" in metrics


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [("3", "Error", "exit code 3"), ("2", "PrerequisiteFailed", "exit code 2")],
)
def test_runner_exit_code_fails_the_session_with_a_reason(
    kube: KubeClient,
    project: str,
    operator_process: OperatorProcess,
    code: str,
    reason: str,
    message: str,
) -> None:
    ns = project
    new_session(kube, ns, "bad", env={"RUNNER_EXIT_AFTER": "1", "RUNNER_EXIT_CODE": code})
    failed = _wait_phase(kube, ns, "bad", "Failed", timeout=90)
    ready = _cond(failed, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == reason
    assert message in ready["message"]
    assert failed["status"]["completionTime"]
    _wait_runner_gone(kube, ns, "bad")


def test_stop_then_restart(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    first_pod = _running_runner_uid(kube, ns, "ctl")

    kube.patch(
        AGENTIC_SESSIONS.path(ns, "ctl"),
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
        lambda: kube.get_or_none(f"/api/v1/namespaces/{ns}/pods/ctl-runner") is None,
        timeout=60,
        what="runner pod deleted",
    )

    kube.patch(
        AGENTIC_SESSIONS.path(ns, "ctl"),
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
    second_pod = _runner_uid(kube, ns, "ctl")
    assert second_pod != first_pod
    metrics = operator_process.metrics()
    assert (
        sample(
            metrics,
            "ambient_session_phase_transitions_total",
            namespace=ns,
            from_phase="Stopped",
            to_phase="Pending",
        )
        == 1
    )


def test_restart_records_restarting_condition(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    new_session(kube, ns, "again", env={"RUNNER_EXIT_AFTER": "8"})
    first = _wait_phase(kube, ns, "again", "Completed", timeout=60)
    rv = first["metadata"]["resourceVersion"]
    kube.patch(
        AGENTIC_SESSIONS.path(ns, "again"),
        {"metadata": {"annotations": {"ambient-code.io/desired-phase": "Running"}}},
    )
    # Every status the operator writes, in order, straight from a watch.
    history: list[tuple[str, str]] = []
    stream = kube.watch(
        AGENTIC_SESSIONS.path(ns),
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
    _running(kube, ns, "idle", inactivityTimeout=8)
    time.sleep(1)
    assert phase(kube, ns, "idle") == "Running"
    time.sleep(8)
    # Any event brings the session back into the queue (otherwise the 30 s Running requeue would).
    kube.patch(AGENTIC_SESSIONS.path(ns, "idle"), {"metadata": {"labels": {"poke": "1"}}})
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
        lambda: kube.get_or_none(PROJECT_SETTINGS.path(ns, "projectsettings")),
        timeout=30,
        what="settings",
    )
    new_session(kube, ns, "proj")
    new_session(kube, ns, "never", inactivityTimeout=0)
    _wait_phase(kube, ns, "proj", "Running", timeout=60)
    _wait_phase(kube, ns, "never", "Running", timeout=60)
    # The project's timeout is set only once both run: idleness counts from startTime, so a
    # runner pod slower to start than the timeout (a loaded node) would take "proj" from
    # Creating to Stopping with no Running in between for the wait above to see. Setting it
    # now also proves a ProjectSettings change reaches sessions that are already running.
    kube.patch(
        PROJECT_SETTINGS.path(ns, "projectsettings"), {"spec": {"inactivityTimeoutSeconds": 8}}
    )
    time.sleep(9)
    for name in ("proj", "never"):
        kube.patch(AGENTIC_SESSIONS.path(ns, name), {"metadata": {"labels": {"poke": "1"}}})
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
    assert kube.get_or_none(f"/api/v1/namespaces/{namespace}/pods/ignored-runner") is None


def test_deleted_runner_pod_is_recreated(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    old = _running_runner_uid(kube, ns, "phoenix")
    kube.delete(f"/api/v1/namespaces/{ns}/pods/phoenix-runner", params={"gracePeriodSeconds": "0"})

    def new_pod_running() -> bool:
        pod = kube.get_or_none(f"/api/v1/namespaces/{ns}/pods/phoenix-runner")
        return bool(
            pod and pod["metadata"]["uid"] != old and phase(kube, ns, "phoenix") == "Running"
        )

    wait_until(new_pod_running, timeout=90, what="runner pod recreated and session Running again")


def _mark(kube: KubeClient, ns: str, name: str, phase: str) -> None:
    """Another writer (the platform's backend, a user with kubectl) sets the phase."""
    for _ in range(10):
        obj = kube.get(AGENTIC_SESSIONS.path(ns, name))
        obj["status"] = {**(obj.get("status") or {}), "phase": phase}
        try:
            kube.replace(AGENTIC_SESSIONS.path(ns, name, "status"), obj)
            return
        except ConflictError:
            continue
    raise AssertionError(f"could not mark {name} {phase}")


def test_session_finished_by_another_writer_keeps_no_runner(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    """The upstream-shaped race: sessions created, then marked Completed (or Failed) by
    another client a moment later, some before the operator made a pod, some after."""
    ns = project
    delays = {"r0": 0.0, "r1": 0.3, "r2": 1.0}
    for name in delays:
        new_session(kube, ns, name)
    t0 = time.monotonic()
    for name, delay in delays.items():
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        _mark(kube, ns, name, "Completed")
    # And one the operator has certainly started: its pod exists when it is marked Failed.
    new_session(kube, ns, "late")
    wait_until(
        lambda: kube.get_or_none(PODS.path(ns, "late-runner")) is not None,
        timeout=60,
        what="late's runner pod",
    )
    _mark(kube, ns, "late", "Failed")
    for name in (*delays, "late"):
        _wait_runner_gone(kube, ns, name, timeout=90)
    time.sleep(3)  # nothing comes back afterwards either
    pods = kube.list(PODS.path(ns), params={"labelSelector": "app=ambient-code-runner"})
    assert pods["items"] == []
    for name in delays:
        assert phase(kube, ns, name) == "Completed"
    assert phase(kube, ns, "late") == "Failed"


def test_a_runner_pod_found_behind_a_terminal_session_is_removed(
    kube: KubeClient, project: str, kubeconfig: Path, tmp_path: Path
) -> None:
    """The lean cache path: the operator starts, its initial LIST brings a Completed session
    (never queued: terminal) and a live runner pod owned by it; the pod event removes it."""
    ns = project
    session = new_session(kube, ns, "left")
    _mark(kube, ns, "left", "Completed")
    create_parked_runner_pod(kube, ns, session, "left-runner")
    op = start_operator_process(kubeconfig, tmp_path)
    try:
        wait_until(
            lambda: kube.get_or_none(PODS.path(ns, "left-runner")) is None,
            timeout=60,
            what="runner pod of the Completed session removed",
        )
        assert phase(kube, ns, "left") == "Completed"
    finally:
        op.terminate()


def test_missing_runner_secret_holds_the_session_without_a_pod(
    kube: KubeClient, bare_project: str, operator_process: OperatorProcess
) -> None:
    ns = bare_project
    new_session(kube, ns, "waits")

    def secret_missing() -> dict[str, Any] | None:
        obj = get_session(kube, ns, "waits") or {}
        for c in (obj.get("status") or {}).get("conditions") or ():
            if c["type"] == "SecretsReady" and c["reason"] == "RunnerSecretMissing":
                return c
        return None

    cond = wait_until(secret_missing, timeout=30, what="SecretsReady=False RunnerSecretMissing")
    assert cond["status"] == "False" and "ambient-runner-secrets" in cond["message"]
    time.sleep(3)  # retried meanwhile, and still nothing made
    assert phase(kube, ns, "waits") == "Pending"
    assert kube.get_or_none(PODS.path(ns, "waits-runner")) is None
    assert kube.get_or_none(SERVICE_ACCOUNTS.path(ns, "ambient-session-waits")) is None
    create_runner_secrets(kube, ns)
    running = _wait_phase(kube, ns, "waits", "Running", timeout=90)
    assert _cond(running, "SecretsReady")["status"] == "True"


def test_restart_after_an_inactivity_stop_starts_afresh(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    _running(kube, ns, "nap", inactivityTimeout=12)
    # The runner reports activity, long ago: the session is idle beyond its timeout.
    obj = kube.get(AGENTIC_SESSIONS.path(ns, "nap"))
    obj["status"]["lastActivityTime"] = "2020-01-01T00:00:00Z"
    kube.replace(AGENTIC_SESSIONS.path(ns, "nap", "status"), obj)
    stopped = _wait_phase(kube, ns, "nap", "Stopped", timeout=60)
    assert stopped["status"]["stoppedReason"] == "inactivity"
    wait_until(
        lambda: DESIRED not in _annotations(get_session(kube, ns, "nap") or {}),
        timeout=30,
        what="stop annotations cleared",
    )
    kube.patch(
        AGENTIC_SESSIONS.path(ns, "nap"), {"metadata": {"annotations": {DESIRED: "Running"}}}
    )
    restarted = _wait_phase(kube, ns, "nap", "Running", timeout=60)
    status = restarted["status"]
    assert not {"lastActivityTime", "completionTime", "stoppedReason"} & set(status), status
    assert status["startTime"] > stopped["status"]["startTime"]
    # Within the timeout of the new start, any look at it keeps it running; with the old
    # activity still in place it would be stopped again at once.
    kube.patch(AGENTIC_SESSIONS.path(ns, "nap"), {"metadata": {"labels": {"poke": "1"}}})
    time.sleep(4)
    assert phase(kube, ns, "nap") == "Running"


def test_a_worker_that_lost_the_race_leaves_the_winners_pod_alone(
    kube: KubeClient, project: str, kubeconfig: Path
) -> None:
    """The interleaving the ten-worker test meets by chance, forced: worker B finds no pod,
    worker A then makes the pod and writes Creating, and only then does B read the phase
    again before its own create. B must see that it lost, not take the pod for an orphan
    behind a finished session and delete it (which made a second pod)."""
    ns, name = project, "race"
    with caches_only(kubeconfig) as holder:
        new_session(kube, ns, name)
        key = f"{ns}/{name}"
        wait_until(lambda: holder.op.sessions.get(key) is not None, timeout=20, what="cache")
        reconcile = holder.op.session_reconciler
        runner = reconcile.runner
        looked_up = runner.live_pod
        interleaved: list[str] = []

        def live_pod_then_lose_the_race(pod_ns: str, pod_session: str) -> dict[str, Any] | None:
            found = looked_up(pod_ns, pod_session)
            if found is None and not interleaved:
                interleaved.append("A")
                _, error = reconcile(key)  # worker A runs to completion in between
                assert error is None, error
            return found

        runner.live_pod = live_pod_then_lose_the_race  # type: ignore[method-assign]
        _, error = reconcile(key)  # worker B
        assert error is None, error
        assert interleaved == ["A"]
        assert phase(kube, ns, name) == "Creating"
        pod = kube.get(PODS.path(ns, f"{name}-runner"))
        assert not pod["metadata"].get("deletionTimestamp"), "the winner's pod was deleted"
        reg = holder.op.metrics.registry
        assert reg.get_sample_value("ambient_pod_creation_duration_seconds_count") == 1
