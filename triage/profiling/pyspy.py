"""py-spy for any Python operator, even one without py-spy in its image: a sidecar.

The run adds a container from an image the project builds (busybox and the py-spy binary)
beside the operator, shares the pod's process namespace so it can see the operator's
process, and gives it SYS_PTRACE; the restore takes all three away. Each batch (and the
OOM) gets a `py-spy dump` of the operator's Python process, taken on a worker thread.

py-spy shows where the operator's threads are, not what holds memory: the report says so,
and memory attribution comes from memray or pprof.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

from triage.errors import PreflightError
from triage.podio import exec_in
from triage.profiling import Created, Profiler

SIDECAR = "triage-pyspy"
_FIND = (
    "for d in /proc/[0-9]*; do "
    "c=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null); "
    '[ -n "$c" ] && echo "${d#/proc/} $c"; '
    "done"
)
#: Pod security levels that forbid adding SYS_PTRACE.
_FORBIDDING = ("baseline", "restricted")


class PySpyProfiler(Profiler):
    kind = "py-spy"

    def preflight(self, *, pod: str | None) -> None:
        ns = self.cluster.client.get(f"/api/v1/namespaces/{self.target.namespace}")
        labels = (ns.get("metadata") or {}).get("labels") or {}
        level = labels.get("pod-security.kubernetes.io/enforce")
        if level in _FORBIDDING:
            raise PreflightError(
                f"namespace {self.target.namespace} enforces pod security level {level!r}, which "
                "forbids the SYS_PTRACE capability the py-spy sidecar needs; use --profile memray "
                "(memray in the image) or run against a namespace that allows it"
            )

    def modify(self, spec: dict[str, Any], *, planned_sessions: int) -> list[Created]:
        pod = spec["template"]["spec"]
        pod["shareProcessNamespace"] = True
        target = next(c for c in pod["containers"] if c["name"] == self.target.container)
        image = self.settings.pyspy_image
        sidecar: dict[str, Any] = {
            "name": SIDECAR,
            "image": image,
            "imagePullPolicy": "Never" if image.startswith("localhost/") else "IfNotPresent",
            "command": [
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
            ],
            "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
            "resources": {
                "requests": {"cpu": "1m", "memory": "8Mi"},
                "limits": {"cpu": "500m", "memory": "64Mi"},
            },
        }
        uid = (target.get("securityContext") or {}).get("runAsUser")
        if uid is None:
            uid = (pod.get("securityContext") or {}).get("runAsUser")
        if uid is not None:
            # ptrace needs the same user (plus the capability) under a non-root pod policy.
            sidecar["securityContext"]["runAsUser"] = copy.deepcopy(uid)
        if not any(c["name"] == SIDECAR for c in pod["containers"]):
            pod["containers"].append(sidecar)
        self.info = {"sidecar_image": image, "share_process_namespace": True}
        return []

    def _target_pid(self, pod: str) -> int | None:
        r = exec_in(
            self.cluster, namespace=self.target.namespace, pod=pod, container=SIDECAR,
            argv=["sh", "-c", _FIND], timeout=20,
        )  # fmt: skip
        if not r.ok:
            raise RuntimeError(f"cannot list processes from the sidecar: {r.error()}")
        want = shlex.join(self.target.command or [])[:60]
        candidates: list[tuple[int, int]] = []
        for line in r.stdout.decode("utf-8", "replace").splitlines():
            pid_text, _, cmd = line.partition(" ")
            if not pid_text.isdigit() or pid_text == "1":
                continue  # pid 1 is the pod's pause process
            cmd = cmd.strip()
            score = 2 if want and cmd.startswith(want) else (1 if "python" in cmd else 0)
            if score and not cmd.startswith(("sh -c", "sleep")):
                candidates.append((score, int(pid_text)))
        return max(candidates)[1] if candidates else None

    def _dump(self, batch: int, pod: str) -> None:
        pid = self._target_pid(pod)
        if pid is None:
            raise RuntimeError("no Python process of the operator is visible from the sidecar")
        r = exec_in(
            self.cluster, namespace=self.target.namespace, pod=pod, container=SIDECAR,
            argv=["py-spy", "dump", "--pid", str(pid)], timeout=60,
        )  # fmt: skip
        if not r.ok:
            raise RuntimeError(f"py-spy dump --pid {pid} failed: {r.error()}")
        self.run.write_text(batch, "pyspy.txt", r.stdout.decode("utf-8", "replace"))

    def snapshot(self, batch: int, pod: str, *, oom: bool = False) -> None:
        self._submit(f"batch {batch}: py-spy", self._dump, batch, pod)
