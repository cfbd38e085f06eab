"""Changes the operator Deployment for a run, and puts it back exactly.

The run needs a memory limit (with a request no larger, or the apiserver rejects the update),
profiling env, a capture volume that outlives the container, and SYS_PTRACE for py-spy.
With memray it also adds a keeper container that only sleeps with the capture volume
mounted: an operator in a crash loop lives a second or two between back-offs, too short to
exec into, and the capture of the process that was killed is the one that matters most.
Restore replaces the whole spec with the journal's copy, so anything the run added is gone
and anything that had been there is back, field for field, whatever the run got to do.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from triage.errors import RestoreError, RunFailedError
from triage.journal import SERVER_ANNOTATIONS, Journal, user_metadata
from triage.kube import ApiError, Cluster
from triage.preflight import container_of
from triage.quantity import format_bytes, parse_quantity_bytes

PROFILE_DIR = "/profiles"
PROFILE_VOLUME = "triage-profiles"
#: The sidecar captures are copied out through (see the module docstring).
KEEPER_CONTAINER = "triage-profile-keeper"


@dataclass(frozen=True)
class RunPatch:
    mem_limit_bytes: int
    profile: str  # "memray" | "py-spy" | "none"
    extra_env: dict[str, str] = field(default_factory=dict)


def _path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for entry in env:
        if entry.get("name") == name:
            entry.pop("valueFrom", None)
            entry["value"] = value
            return
    env.append({"name": name, "value": value})


def _keeper(operator: dict[str, Any]) -> dict[str, Any]:
    """A container that sleeps beside the operator with the same image and mounts.

    The same image and mounts, because that is what is known to give a shell and `cat` in
    this pod on any cluster (the local node's operator image is host-mounted, kind's is a
    normal Python image); the same securityContext, so it can read what the operator wrote.
    """
    keeper: dict[str, Any] = {
        "name": KEEPER_CONTAINER,
        "image": operator["image"],
        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
        "volumeMounts": copy.deepcopy(operator.get("volumeMounts") or []),
        "resources": {
            "requests": {"cpu": "1m", "memory": "4Mi"},
            "limits": {"cpu": "50m", "memory": "32Mi"},
        },
    }
    if "imagePullPolicy" in operator:
        keeper["imagePullPolicy"] = operator["imagePullPolicy"]
    if "securityContext" in operator:
        keeper["securityContext"] = copy.deepcopy(operator["securityContext"])
    return keeper


def patched_spec(
    original: dict[str, Any], *, deployment_name: str, patch: RunPatch
) -> dict[str, Any]:
    """The spec the run uses: `original` with the run's changes, nothing else touched."""
    dep = {"metadata": {"name": deployment_name}, "spec": copy.deepcopy(original)}
    container = container_of(dep)
    resources = container.setdefault("resources", {})
    limits = resources.setdefault("limits", {})
    limits["memory"] = format_bytes(patch.mem_limit_bytes)
    requests = resources.get("requests") or {}
    if (
        "memory" in requests
        and parse_quantity_bytes(str(requests["memory"])) > patch.mem_limit_bytes
    ):
        # The apiserver rejects requests.memory > limits.memory (the upstream script's trap).
        requests["memory"] = format_bytes(patch.mem_limit_bytes)
    if patch.profile == "memray":
        _set_env(container, "AGENTIC_PROFILE", "memray")
        _set_env(container, "AGENTIC_PROFILE_DIR", PROFILE_DIR)
        pod_spec = dep["spec"]["template"]["spec"]
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == PROFILE_DIR for m in mounts):
            mounts.append({"name": PROFILE_VOLUME, "mountPath": PROFILE_DIR})
            pod_spec.setdefault("volumes", []).append(
                {"name": PROFILE_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}
            )
        if not any(c.get("name") == KEEPER_CONTAINER for c in pod_spec["containers"]):
            pod_spec["containers"].append(_keeper(container))
    if patch.profile == "py-spy":
        caps = container.setdefault("securityContext", {}).setdefault("capabilities", {})
        adds = caps.setdefault("add", [])
        if "SYS_PTRACE" not in adds:
            adds.append("SYS_PTRACE")
    for name, value in patch.extra_env.items():
        _set_env(container, name, value)
    return dep["spec"]


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


def wait_rollout(cluster: Cluster, *, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        dep: dict[str, Any] = cluster.json("GET", _path(namespace, name))
        if rollout_done(dep):
            return dep
        if time.monotonic() > deadline:
            status = dep.get("status", {})
            raise RunFailedError(
                f"Deployment {namespace}/{name} did not roll out within {timeout:.0f}s "
                f"(updated {status.get('updatedReplicas', 0)}, ready {status.get('readyReplicas', 0)})"
            )
        time.sleep(1)


def _replace_spec(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    # A PUT of the whole spec (not a merge patch) is what makes absent fields absent again.
    for _ in range(10):
        current: dict[str, Any] = cluster.json("GET", _path(namespace, name))
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
        try:
            result: dict[str, Any] = cluster.json("PUT", _path(namespace, name), body=current)
            return result
        except ApiError as e:
            if not e.conflict:
                raise
    raise ApiError(409, "Conflict", f"Deployment {namespace}/{name} kept changing under us")


def apply_run_patch(
    cluster: Cluster, journal: Journal, patch: RunPatch, *, timeout: float = 180
) -> None:
    """Apply the run's changes (journaled first) and wait until the new pod is ready."""
    spec = patched_spec(journal.original_spec, deployment_name=journal.name, patch=patch)
    journal.record(
        "patch",
        mem_limit=format_bytes(patch.mem_limit_bytes),
        profile=patch.profile,
        extra_env=dict(patch.extra_env),
        spec=spec,
    )
    try:
        _replace_spec(
            cluster, namespace=journal.namespace, name=journal.name, spec=spec, metadata=None
        )
    except ApiError as e:
        raise RunFailedError(
            f"could not patch Deployment {journal.namespace}/{journal.name}: {e}"
        ) from e
    wait_rollout(cluster, namespace=journal.namespace, name=journal.name, timeout=timeout)
    journal.record("patched")


def is_restored(current: dict[str, Any], journal: Journal) -> bool:
    return (
        current["spec"] == journal.original_spec
        and user_metadata(current) == journal.original_metadata
    )


def restore(cluster: Cluster, journal: Journal, *, timeout: float = 180, wait: bool = True) -> str:
    """Put the Deployment back to the journal's copy. Idempotent: "restored" or "already-restored"."""
    path = _path(journal.namespace, journal.name)
    try:
        current: dict[str, Any] = cluster.json("GET", path)
    except ApiError as e:
        raise RestoreError(
            f"cannot read Deployment {journal.namespace}/{journal.name} to restore it: {e}"
        ) from e
    if journal.uid and current["metadata"].get("uid") != journal.uid:
        raise RestoreError(
            f"Deployment {journal.namespace}/{journal.name} was deleted and recreated since the run "
            "started; not overwriting a different object"
        )
    if is_restored(current, journal):
        journal.record("restore", result="already-restored")
        return "already-restored"
    journal.record("restore-begin")
    try:
        _replace_spec(
            cluster,
            namespace=journal.namespace,
            name=journal.name,
            spec=journal.original_spec,
            metadata=journal.original_metadata,
        )
        after: dict[str, Any] = cluster.json("GET", path)
    except ApiError as e:
        raise RestoreError(
            f"restoring Deployment {journal.namespace}/{journal.name} failed: {e}"
        ) from e
    if not is_restored(after, journal):
        raise RestoreError(
            f"Deployment {journal.namespace}/{journal.name} still differs from the journal after restore"
        )
    journal.record("restore", result="restored")
    if wait:
        try:
            wait_rollout(cluster, namespace=journal.namespace, name=journal.name, timeout=timeout)
        except RunFailedError as e:
            raise RestoreError(f"spec restored, but the rollout did not finish: {e.message}") from e
    return "restored"


def operator_pod(cluster: Cluster, *, namespace: str, deployment: str) -> dict[str, Any] | None:
    """The Deployment's current pod: the newest one not being deleted."""
    dep = cluster.json("GET", _path(namespace, deployment))
    selector = ",".join(
        f"{k}={v}" for k, v in dep["spec"]["selector"].get("matchLabels", {}).items()
    )
    pods = cluster.json(
        "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
    )
    live = [p for p in pods.get("items", []) if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return None
    newest: dict[str, Any] = max(live, key=lambda p: p["metadata"]["creationTimestamp"])
    return newest
