"""Restarting the operator for a cold start: its container, in place, as a crash or an OOM does.

A cold start measures the re-list: what the operator does when its process starts with
everything already in the cluster. An operator that is OOMKilled or crashes restarts that
way, in the same pod, at once, and that is how crash loops at start-up happen. Deleting the
pod instead makes the replacement wait for the old pod to be gone (a host port, a Recreate
strategy) and, on a 1.20 kubelet, for the kubelet's status sync to remove the old pod
object: 8-14 s on this machine's cluster that belong to neither the operator nor its
re-list, on every cold start.

So the container is asked to stop from inside: SIGTERM to its PID 1, which every operator
runtime handles (controller-runtime's signal handler, kopf, ours), and the kubelet starts
it again. Where that cannot work the pod is deleted, as before, and the result says why:
- the pod shares one process namespace: PID 1 is the pause process, and ending it ends the
  pod (the py-spy sidecar asks for this);
- the image has no `kill` and no shell (distroless): the exec fails;
- PID 1 has no SIGTERM handler: the kernel delivers to a namespace's init only the signals
  it handles, so the signal would be dropped (a Python operator on the official client that
  never installed one; a shell that started the operator without `exec`). The exec reads
  PID 1's caught-signal mask (SigCgt in /proc/1/status) and signals only when SIGTERM is in
  it, so this case costs one exec instead of the whole STOP_WAIT;
- PID 1 handles SIGTERM but does not stop: the container is still running after STOP_WAIT.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

from agentic_operator.kube import KubeError
from agentic_operator.resources import PODS
from triage.cluster import Cluster
from triage.podio import exec_in
from triage.sampling import container_status

#: How long a signalled PID 1 may take to stop before the pod is deleted instead.
STOP_WAIT = 10.0
#: After an exec that failed: long enough for the kubelet to see a container that did end.
FAILED_EXEC_WAIT = 2.0
POLL = 0.25
#: With shell builtins only: SIGTERM to PID 1 when it handles the signal (bit 14 of SigCgt is
#: signal 15). Prints PID 1's name; exit 4 when it has no handler (nothing sent), 3 when the
#: mask cannot be read.
_SIGTERM_IF_CAUGHT = (
    'n=; m=; while read -r k v; do case "$k" in Name:) n=$v;; SigCgt:) m=$v;; esac; '
    "done < /proc/1/status; "
    '[ -n "$m" ] || { echo "no SigCgt in /proc/1/status"; exit 3; }; '
    '[ $(( (0x$m >> 14) & 1 )) = 1 ] || { echo "$n"; exit 4; }; '
    'kill -TERM 1 || exit; echo "$n"'
)
#: Ways to reach PID 1: the checking shell, else (an image without a shell) `kill` alone.
_SIGNAL = (["sh", "-c", _SIGTERM_IF_CAUGHT], ["kill", "-TERM", "1"])
_NO_HANDLER = 4


@dataclass(frozen=True)
class Restarted:
    pod: str
    how: Literal["in-place", "deleted"]
    #: The container's restartCount before: in place, the new container is the next one.
    restart_count: int
    #: Why it could not restart in place ("" when it did).
    fallback: str = ""


def restart_count(pod: dict[str, Any], container: str) -> int:
    return int(container_status(pod, container).get("restartCount", 0))


def _stopped(pod: dict[str, Any], container: str, before: int, before_id: str) -> bool:
    """The container that ran when the restart began has stopped: a restart counted, that
    container terminated, or the kubelet already reports it as the last one.

    Only a container that was there can stop: one still waiting for its first start (its
    pod just made, the kubelet's report behind the process) has not, whatever its state.
    """
    status = container_status(pod, container)
    if not status:
        return False
    if int(status.get("restartCount", 0)) > before:
        return True
    if "terminated" in (status.get("state") or {}):
        return True
    last = (status.get("lastState") or {}).get("terminated") or {}
    return bool(before_id) and last.get("containerID") == before_id


def in_place_blocker(pod: dict[str, Any]) -> str | None:
    """Why this pod's container cannot be restarted by signalling PID 1, or None."""
    if (pod.get("spec") or {}).get("shareProcessNamespace"):
        return "the pod shares one process namespace (PID 1 is the pause process)"
    return None


def _no_handler(said: bytes, container: str) -> str:
    name = said.decode("utf-8", "replace").strip() or "PID 1"
    return (f"PID 1 ({name}) of {container} has no SIGTERM handler, and a container's "
            "PID 1 ignores a signal it does not handle")  # fmt: skip


def restart(cluster: Cluster, *, namespace: str, container: str, pod: dict[str, Any]) -> Restarted:
    """Restart `container` of `pod` in place, or delete the pod when that cannot work."""
    name = pod["metadata"]["name"]
    # The caller's copy can be older than the kubelet's last report: the stop is judged
    # against the container as it is now.
    with contextlib.suppress(KubeError):  # unreadable now: the caller's copy it is
        pod = cluster.client.get_or_none(PODS.path(namespace, name)) or pod
    before = restart_count(pod, container)
    before_id = str(container_status(pod, container).get("containerID") or "")
    why = in_place_blocker(pod)
    done = None
    if why is None:
        error = ""
        for argv in _SIGNAL:
            done = exec_in(cluster, namespace=namespace, pod=name, container=container,
                           argv=argv, timeout=15)  # fmt: skip
            if done.ok:
                break
            if done.returncode == _NO_HANDLER and argv is _SIGNAL[0]:
                why = _no_handler(done.stdout, container)
                break
            error = done.error(120)
    if why is None:
        # A failed exec may still have delivered the signal (the container ended under it):
        # a short look then, the whole wait only for a signal that was surely sent.
        sent = done is not None and done.ok
        wait = STOP_WAIT if sent else FAILED_EXEC_WAIT
        if _wait_stopped(cluster, namespace, name, container, before, before_id, wait):
            return Restarted(name, "in-place", before)
        why = (
            f"PID 1 of {container} did not stop within {STOP_WAIT:.0f}s of SIGTERM"
            if sent
            else f"cannot signal PID 1 of {container}: {error}"
        )
    cluster.client.delete_if_present(PODS.path(namespace, name), grace_seconds=1)
    return Restarted(name, "deleted", before, why)


def _wait_stopped(
    cluster: Cluster,
    namespace: str,
    pod: str,
    container: str,
    before: int,
    before_id: str,
    wait: float,
) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            if _stopped(
                cluster.client.get(PODS.path(namespace, pod)), container, before, before_id
            ):
                return True
        except KubeError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
