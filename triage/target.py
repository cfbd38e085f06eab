"""The operator under test: its Deployment, container, command, language, and the pod to watch.

triage works on operators it did not write, so nothing here assumes ours: the container is
the one the user names (`--container`), else the one named like the Deployment, else the
only one; the command is what the Deployment says, else what the running container really
executes (its /proc/1/cmdline, read by exec before any change), else `--target-command`.
With several replicas and leader election the pod that matters is the leader: it is found
from the Lease (or legacy ConfigMap/Endpoints lock) whose holder names one of the pods.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.kube import KubeError
from agentic_operator.resources import CONFIG_MAPS, DEPLOYMENTS, LEASES, PODS
from triage.cluster import Cluster
from triage.errors import PreflightError, UsageError
from triage.podio import exec_in

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


@dataclass
class Target:
    namespace: str
    deployment: str
    container: str
    #: The container's full argv as it runs (None: could not be determined).
    command: list[str] | None = None
    #: "deployment" | "proc" (read from /proc/1/cmdline) | "option" | "".
    command_source: str = ""
    #: "python" | "go" | "unknown".
    language: str = "unknown"
    #: For a Python operator: the interpreter that runs it (argv[0] or the script's shebang).
    interpreter: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_meta(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "deployment": self.deployment,
            "container": self.container,
            "command": shlex.join(self.command) if self.command else "",
            "command_source": self.command_source,
            "language": self.language,
            "interpreter": self.interpreter or "",
        }


def container_of(deployment: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The target container: `name`, else the one named like the Deployment, else the first."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if name is not None:
        for c in containers:
            if c["name"] == name:
                return dict(c)
        names = ", ".join(c["name"] for c in containers)
        raise UsageError(f"--container {name!r} is not in the Deployment; its containers: {names}")
    dep_name = deployment["metadata"]["name"]
    return dict(next((c for c in containers if c["name"] == dep_name), containers[0]))


def selector(deployment: dict[str, Any]) -> str:
    labels = deployment["spec"]["selector"].get("matchLabels", {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def live_pods(cluster: Cluster, *, namespace: str, deployment: str) -> list[dict[str, Any]]:
    """The Deployment's pods that are not being deleted or done, newest first.

    An evicted pod stays behind in phase Failed (until something deletes it): it never runs
    again, so it is not a pod to sample.
    """
    dep = cluster.client.get(DEPLOYMENTS.path(namespace, deployment))
    pods = cluster.client.list(PODS.path(namespace), params={"labelSelector": selector(dep)})
    live = [p for p in pods.get("items", []) if alive_pod(p)]
    return sorted(live, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)


def alive_pod(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Failed", "Succeeded")


def leader_of(cluster: Cluster, namespace: str, pods: list[dict[str, Any]]) -> str | None:
    """The pod whose name a leader-election lock in `namespace` names as holder, if any."""
    names: list[str] = sorted((str(p["metadata"]["name"]) for p in pods), key=len, reverse=True)
    holders: list[str] = []
    try:
        for lease in cluster.client.list(LEASES.path(namespace)).get("items", []):
            holders.append(str((lease.get("spec") or {}).get("holderIdentity") or ""))
        for cm in cluster.client.list(CONFIG_MAPS.path(namespace)).get("items", []):
            raw = ((cm.get("metadata") or {}).get("annotations") or {}).get(_LEADER_ANNOTATION)
            if raw:
                holders.append(str(json.loads(raw).get("holderIdentity") or ""))
    except (KubeError, ValueError):
        return None
    for holder in holders:
        for name in names:  # longest first: "op-7f9-abc" before "op-7f9"
            if holder == name or holder.startswith((f"{name}_", f"{name}-")) or name in holder:
                return name
    return None


def pick_pod(
    cluster: Cluster, *, namespace: str, deployment: str
) -> tuple[dict[str, Any] | None, str]:
    """(the pod to sample, how it was chosen): the only pod, the leader, or the newest."""
    pods = live_pods(cluster, namespace=namespace, deployment=deployment)
    if len(pods) <= 1:
        return (pods[0] if pods else None), "only pod"
    leader = leader_of(cluster, namespace, pods)
    if leader is not None:
        return next(p for p in pods if p["metadata"]["name"] == leader), "leader"
    return pods[0], "newest (no leader lock names a pod)"


# -- the command a container runs ---------------------------------------------------------------


def _read(cluster: Cluster, t: Target, pod: str, path: str) -> bytes | None:
    """A file's bytes from inside the container, with whatever program the image has."""
    attempts = [["cat", path]]
    for py in ("python3", "python"):
        attempts.append(
            [py, "-c", f"import sys; sys.stdout.buffer.write(open({path!r}, 'rb').read())"]
        )
    for argv in attempts:
        r = exec_in(
            cluster, namespace=t.namespace, pod=pod, container=t.container, argv=argv, timeout=20
        )
        if r.ok:
            return r.stdout
        if not r.no_such_program:
            t.notes.append(f"reading {path} with {argv[0]}: {r.error(120)}")
    return None


def resolve_command(
    cluster: Cluster,
    t: Target,
    *,
    container: dict[str, Any],
    pod: str | None,
    override: str | None,
) -> None:
    """Fill `t.command` (and its source) from the option, the Deployment, or /proc/1/cmdline."""
    if override:
        try:
            t.command, t.command_source = shlex.split(override), "option"
        except ValueError as e:
            raise UsageError(f"--target-command {override!r}: {e}") from e
        return
    if container.get("command"):
        t.command = [*container["command"], *(container.get("args") or [])]
        t.command_source = "deployment"
        return
    if pod is None:
        return
    raw = _read(cluster, t, pod, "/proc/1/cmdline")
    if raw:
        t.command = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
        t.command_source = "proc"


def resolve_python(cluster: Cluster, t: Target, *, pod: str | None) -> None:
    """Find the interpreter of a Python operator: argv[0] itself, or the script's shebang."""
    if not t.command:
        return
    first = t.command[0]
    if _PYTHON.match(posixpath.basename(first)):
        t.language, t.interpreter = "python", first
        return
    if pod is None:
        return
    head = _read(cluster, t, pod, first)
    if head is None or not head.startswith(b"#!"):
        return
    line = head.split(b"\n", 1)[0][2:].decode("utf-8", "replace").split()
    if line and posixpath.basename(line[0]) == "env" and len(line) > 1:
        line = line[1:]
    if line and _PYTHON.match(posixpath.basename(line[0])):
        t.language, t.interpreter = "python", line[0]


def require_memray(cluster: Cluster, t: Target, *, pod: str) -> None:
    """Preflight: the target's interpreter imports memray (checked by exec), or exit 3."""
    where = f"container {t.container!r} of {t.namespace}/{t.deployment}"
    remedies = "add memray to the image (pip install memray), or use --profile py-spy"
    if not t.command:
        raise PreflightError(
            f"cannot determine the command of {where} (no command in the Deployment, and "
            f"/proc/1/cmdline could not be read); pass --target-command, or {remedies}"
        )
    if t.interpreter is None:
        raise PreflightError(
            f"{where} runs {shlex.join(t.command)[:120]!r}, which is not a Python program "
            f"triage can find the interpreter of; pass --target-command, or {remedies}"
        )
    r = exec_in(
        cluster,
        namespace=t.namespace,
        pod=pod,
        container=t.container,
        argv=[t.interpreter, "-c", "import memray, sys; print(memray.__version__)"],
        timeout=60,
    )
    if not r.ok:
        reason = "no such interpreter" if r.no_such_program else r.error(160).splitlines()[-1]
        raise PreflightError(
            f"{t.interpreter} in {where} cannot import memray ({reason}); {remedies}"
        )
