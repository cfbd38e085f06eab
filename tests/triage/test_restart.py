"""triage.restart on real pods: the container restarts in place where PID 1 takes SIGTERM,
and the pod is deleted where it cannot (a shared process namespace, a PID 1 that ignores
the signal), with the reason."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentic_operator.kube import KubeClient, NotFoundError
from agentic_operator.resources import PODS
from tests.conftest import KUBECONFIG, wait_until
from tests.operator.conftest import RUNNER_IMAGE
from triage import restart as restart_mod
from triage.cluster import connect
from triage.restart import in_place_blocker, restart, restart_count
from triage.sampling import container_status

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "op",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [container],
            "terminationGracePeriodSeconds": 1,
            # A fresh namespace has no token for its default ServiceAccount yet.
            "automountServiceAccountToken": False,
            **spec,
        },
    }


def _running(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = kube.get(PODS.path(ns, name))
        states = [s.get("state") or {} for s in pod["status"].get("containerStatuses") or []]
        return pod if states and "running" in states[0] else None

    return wait_until(ready, timeout=60, what=f"{name} running")


# PID 1 is a shell: it takes SIGTERM only with a trap (a shell that started the operator
# without `exec` has none), which makes every case out of one image.
_POLITE = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
_DEAF = "while :; do sleep 0.2; done"
_STUBBORN = "trap 'echo not now' TERM; while :; do sleep 0.2; done"


def _gone(kube: KubeClient, ns: str, name: str) -> None:
    """Deleted: gone, or going (how long the kubelet then takes is the cluster's business)."""

    def gone() -> bool:
        try:
            return bool(kube.get(PODS.path(ns, name))["metadata"].get("deletionTimestamp"))
        except NotFoundError:
            return True

    wait_until(gone, timeout=30, what=f"the deleted pod {name}")


def test_a_pid_1_that_takes_sigterm_restarts_in_place(namespace: str, kube: KubeClient) -> None:
    kube.create(PODS.path(namespace), _pod("polite", _POLITE))
    pod = _running(kube, namespace, "polite")
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    t0 = time.monotonic()
    done = restart(cluster, namespace=namespace, container="op", pod=pod)
    assert done.how == "in-place" and done.fallback == "" and done.restart_count == 0
    # The same pod, its container started again by the kubelet; nothing waited on a delete.
    wait_until(
        lambda: restart_count(kube.get(PODS.path(namespace, "polite")), "op") == 1,
        timeout=30, what="the restarted container",
    )  # fmt: skip
    assert time.monotonic() - t0 < restart_mod.STOP_WAIT
    after = _running(kube, namespace, "polite")
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]


def test_a_pid_1_without_a_sigterm_handler_is_not_waited_for(
    namespace: str, kube: KubeClient
) -> None:
    """The kernel drops a signal a namespace's init does not handle: no signal is sent, and
    the pod is deleted at once rather than after STOP_WAIT."""
    kube.create(PODS.path(namespace), _pod("deaf", _DEAF))
    pod = _running(kube, namespace, "deaf")
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    t0 = time.monotonic()
    done = restart(cluster, namespace=namespace, container="op", pod=pod)
    assert done.how == "deleted"
    assert "no SIGTERM handler" in done.fallback and "(sh)" in done.fallback, done.fallback
    assert time.monotonic() - t0 < restart_mod.STOP_WAIT / 2
    _gone(kube, namespace, "deaf")


def test_a_pid_1_that_handles_sigterm_but_stays_gets_its_pod_deleted(
    namespace: str, kube: KubeClient
) -> None:
    kube.create(PODS.path(namespace), _pod("stubborn", _STUBBORN))
    pod = _running(kube, namespace, "stubborn")
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    done = restart(cluster, namespace=namespace, container="op", pod=pod)
    assert done.how == "deleted"
    assert "did not stop within" in done.fallback, done.fallback
    assert restart_count(kube.get(PODS.path(namespace, "stubborn")), "op") == 0
    _gone(kube, namespace, "stubborn")


def test_a_shared_process_namespace_is_never_signalled(namespace: str, kube: KubeClient) -> None:
    kube.create(PODS.path(namespace), _pod("shared", _POLITE, shareProcessNamespace=True))
    pod = _running(kube, namespace, "shared")
    assert in_place_blocker(pod) is not None
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    t0 = time.monotonic()
    done = restart(cluster, namespace=namespace, container="op", pod=pod)
    assert done.how == "deleted" and "process namespace" in done.fallback
    assert time.monotonic() - t0 < 5, "no signal was sent, so nothing was waited for"


def test_a_container_not_started_yet_is_not_taken_for_a_stopped_one(
    namespace: str, kube: KubeClient
) -> None:
    """A container still waiting for its first start (here behind an init container) cannot
    be signalled, and that it is not running says nothing about a restart: the pod is
    deleted with the reason, never reported as restarted in place."""
    init = {
        "name": "first",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", "sleep 120"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    kube.create(PODS.path(namespace), _pod("late", _POLITE, initContainers=[init]))

    def initializing() -> dict[str, Any] | None:
        pod = kube.get(PODS.path(namespace, "late"))
        status = container_status(pod, "op")
        waiting = (status.get("state") or {}).get("waiting") or {}
        return pod if waiting.get("reason") == "PodInitializing" else None

    pod = wait_until(initializing, timeout=60, what="the container waiting for its first start")
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    done = restart(cluster, namespace=namespace, container="op", pod=pod)
    assert done.how == "deleted" and "cannot signal PID 1" in done.fallback, done
    _gone(kube, namespace, "late")


def test_a_stop_is_read_from_the_container_that_ran() -> None:
    # What the kubelet reports after the restart began, for a container that ran as "c-1"
    # with no restart counted yet.
    def pod(state: dict[str, Any], last: dict[str, Any] | None = None, count: int = 0) -> Any:
        status = {"name": "op", "restartCount": count, "state": state, "lastState": last or {}}
        return {"status": {"containerStatuses": [status]}}

    stopped = restart_mod._stopped
    assert not stopped(pod({"running": {}}), "op", 0, "c-1")
    assert stopped(pod({"running": {}}, count=1), "op", 0, "c-1")
    assert stopped(pod({"terminated": {"exitCode": 0}}), "op", 0, "c-1")
    back_off = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert stopped(pod(back_off, {"terminated": {"containerID": "c-1"}}), "op", 0, "c-1")
    # Waiting, but for a first start, or after some earlier container: not this stop.
    assert not stopped(pod({"waiting": {"reason": "PodInitializing"}}), "op", 0, "")
    assert not stopped(pod(back_off, {"terminated": {"containerID": "c-0"}}), "op", 0, "c-1")
    assert not stopped({"status": {}}, "op", 0, "c-1")
