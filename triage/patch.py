"""What a run changes on the operator Deployment, and applying it (journaled first).

The run needs a memory limit (with a request no larger, or the apiserver rejects the update:
the upstream script's trap), the profiler's changes (see `triage.profiling`), and the env the
user asked for. GOMEMLIMIT, when the container sets one, is scaled with the limit (a Go
operator told to collect at 400MiB under a 128Mi limit would never collect in time); like
every other env entry it is journaled and restored. Everything is applied as one PUT of the
whole spec, after the journal records it, and the run waits for the rollout.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.kube import ConflictError, KubeError, NotFoundError, update_with_retry
from agentic_operator.resources import DEPLOYMENTS, PODS
from triage.cluster import Cluster
from triage.errors import RunFailedError
from triage.journal import SERVER_ANNOTATIONS, Journal
from triage.quantity import format_bytes, parse_quantity_bytes
from triage.rundir import epoch

_GO_MEMLIMIT = re.compile(r"^(\d+)(B|KiB|MiB|GiB|TiB)?$")
_GO_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@dataclass
class RunPatch:
    mem_limit_bytes: int
    container: str
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Pod template annotations: a changed value makes a fresh pod even when nothing else in
    #: the spec changes (memray's fixed cost is read on a fresh pod without memray).
    pod_annotations: dict[str, str] = field(default_factory=dict)


def set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for entry in env:
        if entry.get("name") == name:
            entry.pop("valueFrom", None)
            entry["value"] = value
            return
    env.append({"name": name, "value": value})


def _scaled_gomemlimit(
    container: dict[str, Any], old_limit: int | None, new_limit: int
) -> str | None:
    entry = next((e for e in container.get("env") or [] if e.get("name") == "GOMEMLIMIT"), None)
    if entry is None or "value" not in entry or not old_limit:
        return None
    m = _GO_MEMLIMIT.match(str(entry["value"]).strip())
    if m is None:
        return None
    bytes_ = int(m.group(1)) * _GO_UNITS[m.group(2) or "B"]
    return f"{max(int(bytes_ * new_limit / old_limit) // 2**20, 1)}MiB"


def patched_spec(
    original: dict[str, Any],
    patch: RunPatch,
    *,
    profile: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """The spec the run uses: `original` with the run's changes, nothing else touched."""
    spec = copy.deepcopy(original)
    container = next(
        c for c in spec["template"]["spec"]["containers"] if c["name"] == patch.container
    )
    resources = container.setdefault("resources", {})
    limits = resources.setdefault("limits", {})
    old = limits.get("memory")
    old_bytes = parse_quantity_bytes(old) if old is not None else None
    limits["memory"] = format_bytes(patch.mem_limit_bytes)
    requests = resources.get("requests") or {}
    if (
        "memory" in requests
        and parse_quantity_bytes(str(requests["memory"])) > patch.mem_limit_bytes
    ):
        # The apiserver rejects requests.memory > limits.memory (the upstream script's trap).
        requests["memory"] = format_bytes(patch.mem_limit_bytes)
    scaled = _scaled_gomemlimit(container, old_bytes, patch.mem_limit_bytes)
    if scaled is not None and "GOMEMLIMIT" not in patch.extra_env:
        set_env(container, "GOMEMLIMIT", scaled)
    if profile is not None:
        profile(spec)
    for name, value in patch.extra_env.items():
        set_env(container, name, value)
    if patch.pod_annotations:
        meta = spec["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {}).update(patch.pod_annotations)
    return spec


def rollout_done(dep: dict[str, Any]) -> bool:
    """The Deployment controller has rolled the current spec out and every replica is ready."""
    status = dep.get("status", {})
    want = dep["spec"].get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def wait_rollout(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    timeout: float,
    journal: Journal | None = None,
) -> dict[str, Any]:
    """Wait until the current spec is rolled out and every replica is ready.

    With a journal, terminal pods that hold up a Recreate rollout are journaled and deleted
    (see `_unblock_recreate`).
    """
    deadline = time.monotonic() + timeout
    while True:
        dep: dict[str, Any] = cluster.client.get(DEPLOYMENTS.path(namespace, name))
        if rollout_done(dep):
            return dep
        if journal is not None:
            _unblock_recreate(cluster, journal, dep)
        if time.monotonic() > deadline:
            status = dep.get("status", {})
            raise RunFailedError(
                f"Deployment {namespace}/{name} did not roll out within {timeout:.0f}s "
                f"(updated {status.get('updatedReplicas', 0)}, ready {status.get('readyReplicas', 0)})"
            )
        time.sleep(0.5)


def _unblock_recreate(cluster: Cluster, journal: Journal, dep: dict[str, Any]) -> None:
    """Delete the Deployment's pods that stall a Recreate rollout though nothing runs in them.

    A Recreate rollout starts the new pod only once every old one is gone, and two kinds of
    pod are slow to go or never go:
    - before Kubernetes 1.22 an evicted pod (phase Failed) is never gone: it stays until
      something deletes it, and the rollout waits forever;
    - a deleted pod whose containers have all stopped still waits for the kubelet to tear
      down its volumes and remove it, which a 1.20 kubelet does on its next status sync, up
      to 10 s later (5 to 9 s measured; every rollout of a run pays it, the restore included).
      Its containers are stopped, so removing it at once keeps Recreate's promise (no old
      container runs beside a new one); the kubelet still cleans up after it.
    Such a pod never runs again; the journal keeps it whole (status and the eviction's
    message included) before it is deleted, and the delete is for that pod only (its UID).
    """
    if (dep["spec"].get("strategy") or {}).get("type") != "Recreate":
        return
    status = dep.get("status") or {}
    if status.get("updatedReplicas", 0) or status.get("observedGeneration", 0) < dep[
        "metadata"
    ].get("generation", 0):
        return  # the new ReplicaSet is already scaling up, or the controller has not looked
    labels = dep["spec"]["selector"].get("matchLabels") or {}
    # matchLabels narrows the LIST; ownership decides (a selector may be expressions only,
    # and another workload's pods may carry the same labels).
    params = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}
    pods = cluster.client.list(PODS.path(journal.namespace), params=params if labels else None)
    for pod in pods.get("items", []):
        if not owned_by_deployment(pod, dep["metadata"]["name"]):
            continue
        pod_name = pod["metadata"]["name"]
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionGracePeriodSeconds") == 0:
            continue  # already deleted at once: only its finalizers hold it; asked once is enough
        if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            step = "delete-terminal-pod"
        elif stopped_while_deleted(pod):
            step = "delete-stopped-pod"
        else:
            continue
        journal.record(step, pod=pod)
        outcome = _delete_pod(cluster, journal.namespace, pod_name, uid)
        journal.record("pod-deleted", name=pod_name, uid=uid, outcome=outcome)


def _delete_pod(cluster: Cluster, namespace: str, name: str, uid: str) -> str:
    """Delete that one pod at once; what came of it, for the journal.

    "deleted": this DELETE removed it; "gone": it was already gone; "replaced": the name now
    belongs to another pod (the UID precondition refused), which is left alone.
    """
    try:
        cluster.client.delete(
            PODS.path(namespace, name),
            body={
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid},
            },
        )
    except NotFoundError:
        return "gone"
    except ConflictError:
        return "replaced"
    return "deleted"


def owned_by_deployment(pod: dict[str, Any], deployment: str) -> bool:
    """The pod's controller is one of the Deployment's ReplicaSets.

    A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>` and labels their
    pods with that hash; the hash has no dashes, so no other Deployment's ReplicaSet can
    carry that name. This needs no LIST of ReplicaSets on every poll of a rollout.
    """
    meta = pod.get("metadata") or {}
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if not template_hash:
        return False
    return any(
        ref.get("controller") and ref.get("kind") == "ReplicaSet"
        and ref.get("name") == f"{deployment}-{template_hash}"
        for ref in meta.get("ownerReferences") or ()
    )  # fmt: skip


def stopped_while_deleted(pod: dict[str, Any]) -> bool:
    """The pod is being deleted and every one of its containers stopped after that was asked.

    Init containers count too (a sidecar init container outlives the main ones), a container
    with no status is not known to have stopped, and a `terminated` state from before the
    deletion may be stale (the container restarted since), so each must have finished at or
    after the deletion was asked for. Any doubt leaves the pod to the kubelet.
    """
    meta = pod["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("deletionGracePeriodSeconds") == 0:
        return False  # not being deleted, or already removed at once (finalizers hold it)
    deleted = epoch(meta["deletionTimestamp"])
    if deleted is None:
        return False
    asked = deleted - int(meta.get("deletionGracePeriodSeconds") or 0)
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
        *(status.get("ephemeralContainerStatuses") or []),
    ]
    spec = pod.get("spec") or {}
    names = {c["name"] for c in [*(spec.get("initContainers") or []), *spec.get("containers", [])]}
    if not statuses or not names <= {c["name"] for c in statuses}:
        return False
    for c in statuses:
        finished = epoch(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is None or finished < asked:
            return False
    return True


def replace_spec(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """PUT `spec` (and the user's labels and annotations) onto the live Deployment.

    A PUT of the whole spec, not a merge patch: that is what makes absent fields absent again.
    """

    def mutate(current: dict[str, Any]) -> dict[str, Any]:
        current["spec"] = copy.deepcopy(spec)
        if metadata is not None:
            server_annotations = {
                k: v
                for k, v in (current["metadata"].get("annotations") or {}).items()
                if k in SERVER_ANNOTATIONS
            }
            current["metadata"]["labels"] = metadata["labels"]
            current["metadata"]["annotations"] = {**metadata["annotations"], **server_annotations}
        current.pop("status", None)
        return current

    stored = update_with_retry(cluster.client, DEPLOYMENTS.path(namespace, name), mutate)
    if stored is None:
        raise NotFoundError(status=404, reason="NotFound", message=f"Deployment {namespace}/{name}")
    return stored


def apply(
    cluster: Cluster,
    journal: Journal,
    spec: dict[str, Any],
    *,
    timeout: float,
    details: dict[str, Any],
) -> dict[str, Any]:
    """Journal `spec`, PUT it, wait for the rollout; returns the Deployment as rolled out."""
    journal.record("patch", spec=spec, **details)
    try:
        stored = replace_spec(cluster, namespace=journal.namespace, name=journal.name, spec=spec)
    except KubeError as e:
        raise RunFailedError(
            f"could not patch Deployment {journal.namespace}/{journal.name}: {e}"
        ) from e
    # The spec as the apiserver stored it, defaults filled in: what the restore compares
    # against, so a defaulted field (imagePullPolicy on an added sidecar) is not mistaken
    # for another writer's change.
    journal.record(
        "patched", resourceVersion=stored["metadata"].get("resourceVersion"), spec=stored["spec"]
    )
    return wait_rollout(
        cluster, namespace=journal.namespace, name=journal.name, timeout=timeout, journal=journal
    )
