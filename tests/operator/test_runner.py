"""A session's runner on the real node (`_reconcile.runner`): the token file a refresh
reaches, and runner containers that can never start.

ErrImagePull/ImagePullBackOff and InvalidImageName happen for real here: the operator is
given a runner image the node does not hold (its pull goes to a registry on loopback that
is not there) or one whose name is invalid. CrashLoopBackOff never happens for real with
restartPolicy Never, and CreateContainerConfigError cannot be caused through a session's
spec, so for those two the test writes the container status the kubelet would write, on a
runner pod that is never scheduled (no kubelet ever overwrites it).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from agentic_operator._session_store import view
from agentic_operator.contract import AGENTIC_SESSIONS
from agentic_operator.kube import ConflictError, KubeClient, ServerError
from agentic_operator.resources import PODS, SECRETS, SERVICES
from tests.conftest import kubectl, wait_until
from tests.operator._helpers import caches_only
from tests.operator.conftest import (
    RUNNER_IMAGE,
    OperatorProcess,
    create_parked_runner_pod,
    create_runner_secrets,
    get_session,
    new_session,
    phase,
    start_operator_process,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _ready(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    obj = get_session(kube, ns, name) or {}
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def _token_in_secret(kube: KubeClient, ns: str, name: str) -> str:
    secret = kube.get(SECRETS.path(ns, f"ambient-runner-token-{name}"))
    return base64.b64decode(secret["data"]["k8s-token"]).decode()


def _token_in_pod(ns: str, name: str) -> str:
    return kubectl(
        "-n",
        ns,
        "exec",
        f"{name}-runner",
        "--",
        "/bin/busybox",  # the runner stand-in is one busybox binary
        "cat",
        "/var/run/secrets/ambient/bot-token",
    )


@pytest.mark.slow
def test_token_refresh_reaches_the_running_runner(
    kube: KubeClient, project: str, kubeconfig: Path, tmp_path: Path
) -> None:
    ns = project
    op = start_operator_process(kubeconfig, tmp_path, env={"AGENTIC_TOKEN_REFRESH_SECONDS": "15"})
    try:
        new_session(kube, ns, "tok")
        wait_until(lambda: phase(kube, ns, "tok") == "Running", timeout=60, what="Running")
        first = _token_in_secret(kube, ns, "tok")
        assert _token_in_pod(ns, "tok") == first

        def refreshed() -> str | None:
            # Any event brings the session back early (its Running requeue is 30 s).
            kube.patch(
                f"/apis/vteam.ambient-code/v1alpha1/namespaces/{ns}/agenticsessions/tok",
                {"metadata": {"labels": {"poke": str(int(time.time()))}}},
            )
            token = _token_in_secret(kube, ns, "tok")
            return token if token != first else None

        second = wait_until(refreshed, timeout=90, interval=3, what="token Secret refreshed")
        # The kubelet swaps the mounted file on its next sync of the pod (about a minute).
        wait_until(
            lambda: _token_in_pod(ns, "tok") in (second, _token_in_secret(kube, ns, "tok")),
            timeout=150,
            interval=3,
            what="refreshed token in the running pod's file",
        )
        assert phase(kube, ns, "tok") == "Running"
        pod = kube.get(PODS.path(ns, "tok-runner"))
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        op.terminate()


def _runner_gone(kube: KubeClient, ns: str, name: str) -> bool:
    return (
        kube.get_or_none(PODS.path(ns, f"{name}-runner")) is None
        and kube.get_or_none(SERVICES.path(ns, f"session-{name}")) is None
    )


@pytest.mark.parametrize(
    ("image", "reasons"),
    [
        ("localhost/ambient-runner:not-on-this-node", {"ErrImagePull", "ImagePullBackOff"}),
        ("localhost/Ambient-Runner:Invalid", {"InvalidImageName"}),
    ],
)
def test_a_runner_image_that_cannot_start_fails_the_session(
    kube: KubeClient,
    project: str,
    kubeconfig: Path,
    tmp_path: Path,
    image: str,
    reasons: set[str],
) -> None:
    ns = project
    op = start_operator_process(kubeconfig, tmp_path, env={"AMBIENT_CODE_RUNNER_IMAGE": image})
    try:
        new_session(kube, ns, "img")
        wait_until(lambda: phase(kube, ns, "img") == "Failed", timeout=120, what="Failed")
        ready = _ready(kube, ns, "img")
        assert ready["reason"] in reasons, ready
        assert (get_session(kube, ns, "img") or {})["status"]["completionTime"]
        wait_until(lambda: _runner_gone(kube, ns, "img"), timeout=120, what="pod and Service gone")
    finally:
        op.terminate()


def _write_waiting(
    kube: KubeClient, ns: str, pod_name: str, reason: str, message: str = ""
) -> None:
    """Write the container status the kubelet would write for a runner stuck in `reason`."""
    for _ in range(10):
        pod = kube.get(PODS.path(ns, pod_name))
        pod["status"]["containerStatuses"] = [
            {
                "name": "ambient-code-runner",
                "image": RUNNER_IMAGE,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "waiting": {"reason": reason, "message": message or f"{reason} for the test"}
                },
            }
        ]
        try:
            kube.replace(PODS.path(ns, pod_name, "status"), pod)
            return
        except ConflictError:
            continue
    raise AssertionError("could not write the pod status")


@pytest.mark.parametrize("reason", ["CrashLoopBackOff", "CreateContainerConfigError"])
def test_a_runner_stuck_for_good_fails_the_session(
    kube: KubeClient, bare_project: str, operator_process: OperatorProcess, reason: str
) -> None:
    ns = bare_project
    session = new_session(kube, ns, "stuck")
    # Without the prerequisite Secret the operator waits; meanwhile the runner pod is put
    # in place never to be scheduled, and the operator adopts it once the Secret exists.
    wait_until(
        lambda: any(
            c["reason"] == "RunnerSecretMissing"
            for c in ((get_session(kube, ns, "stuck") or {}).get("status") or {}).get(
                "conditions", []
            )
        ),
        timeout=30,
        what="session waiting for its Secret",
    )
    create_parked_runner_pod(kube, ns, session, "stuck-runner")
    create_runner_secrets(kube, ns)
    wait_until(lambda: phase(kube, ns, "stuck") == "Creating", timeout=60, what="Creating")
    _write_waiting(kube, ns, "stuck-runner", reason)
    wait_until(lambda: phase(kube, ns, "stuck") == "Failed", timeout=60, what="Failed")
    ready = _ready(kube, ns, "stuck")
    assert ready["reason"] == reason
    assert f"{reason} for the test" in ready["message"]
    wait_until(lambda: _runner_gone(kube, ns, "stuck"), timeout=120, what="pod and Service gone")


def test_a_kubelet_cache_timeout_waits_and_a_missing_secret_then_fails(
    kube: KubeClient, bare_project: str, operator_process: OperatorProcess
) -> None:
    # On a busy apiserver the kubelet can fail to read the runner's Secret within its one
    # second and reports CreateContainerConfigError "failed to sync secret cache"; it tries
    # again on its next sync. The session must wait for that, saying why, and fail only
    # when the kubelet says the configuration itself is wrong (the runner's own Secrets are
    # optional, so the message written last is another pod's kind of error, as a kubelet
    # would write it).
    ns = bare_project
    session = new_session(kube, ns, "slow")
    create_parked_runner_pod(kube, ns, session, "slow-runner")
    create_runner_secrets(kube, ns)
    wait_until(lambda: phase(kube, ns, "slow") == "Creating", timeout=60, what="Creating")
    transient = "failed to sync secret cache: timed out waiting for the condition"
    _write_waiting(kube, ns, "slow-runner", "CreateContainerConfigError", transient)

    def reported() -> bool:
        conds = ((get_session(kube, ns, "slow") or {}).get("status") or {}).get("conditions", [])
        return any(c["type"] == "RunnerStarted" and c.get("message") == transient for c in conds)

    wait_until(reported, timeout=30, what="the kubelet's message on RunnerStarted")
    # Several requeues (2 s apart while Creating) read the same pod and must keep waiting.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert phase(kube, ns, "slow") == "Creating"
        time.sleep(0.5)
    assert kube.get(PODS.path(ns, "slow-runner"))["metadata"].get("deletionTimestamp") is None
    _write_waiting(kube, ns, "slow-runner", "CreateContainerConfigError", 'secret "gone" not found')
    wait_until(lambda: phase(kube, ns, "slow") == "Failed", timeout=60, what="Failed")
    assert _ready(kube, ns, "slow")["reason"] == "CreateContainerConfigError"
    wait_until(lambda: _runner_gone(kube, ns, "slow"), timeout=120, what="pod and Service gone")


def test_a_going_pod_still_in_the_cache_does_not_hide_its_running_successor(
    kube: KubeClient, project: str, kubeconfig: Path
) -> None:
    # After a restart the pod cache can still hold the previous run's pod, on its way out,
    # while the new one already runs: a Creating session must look at the apiserver rather
    # than wait, silently, for the watch to catch up.
    ns = project
    with caches_only(kubeconfig) as holder:
        op = holder.op
        new_session(kube, ns, "succ")
        key, pod_key = f"{ns}/succ", f"{ns}/succ-runner"
        wait_until(lambda: op.sessions.get(key) is not None, timeout=20, what="cached")

        def running() -> bool:
            try:
                op.session_reconciler(key)
            except ServerError as e:  # a new ServiceAccount without its token yet: try again
                if "service account" not in str(e):
                    raise
                return False
            return phase(kube, ns, "succ") == "Running"

        wait_until(running, timeout=90, interval=0.5, what="Running")
        wait_until(lambda: op.pods.get(pod_key) is not None, timeout=20, what="pod cached")
        obj = kube.get(AGENTIC_SESSIONS.path(ns, "succ"))
        obj["status"]["phase"] = "Creating"
        kube.replace(AGENTIC_SESSIONS.path(ns, "succ", "status"), obj)
        wait_until(
            lambda: view(op.sessions.get(key)).phase == "Creating",  # type: ignore[arg-type]
            timeout=10,
            what="cache sees Creating",
        )
        with op.pods._lock:  # the watch's view of the old pod, as it would lag behind
            cached = op.pods._store.get(pod_key)
            assert cached is not None
            op.pods._store.put(pod_key, cached._replace(uid="previous-run", deleting=True))
        op.session_reconciler(key)
        assert phase(kube, ns, "succ") == "Running"
