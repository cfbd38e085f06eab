"""memray's fixed cost, and the pod it is read on.

A profiled run's OOM point is corrected by what memray itself holds at idle (its Tracker,
the launcher): the profiled process's baseline minus the same program's idle memory without
memray, on a fresh pod of the run's spec. Not the pod that was running: it has been up as
long as it has, holding whatever it cached meanwhile.

That took two rollouts before the load: the run's spec without memray, read at idle, then
the profiled spec. On a Deployment with the Recreate strategy (host ports) each rollout
waits for the old pod to be gone, 8-14 s on a 1.20 kubelet. Where it can, one pod now does
both: the profiled spec goes out with TRIAGE_MEMRAY_PLAIN_FIRST, the launcher's first start
in the pod execs the container's own command untouched (memray_launch), triage reads it at
idle and restarts the container in place (triage.restart), and the second start, finding
the launcher's mark in the capture volume, runs under memray. Same pod, spec and node;
only memray differs.

Two rollouts remain where one pod cannot work, decided before anything changes: more than
one replica (each pod would need its own restart), a pod that shares one process namespace,
or an operator whose PID 1 has no SIGTERM handler (read from the running pod). Should the
restart fall back to deleting the pod anyway, the replacement starts plain again, so the
profiled spec without the flag is rolled out: the second rollout, as before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

from agentic_operator.resources import PODS
from triage.cluster import Cluster
from triage.journal import Journal
from triage.memray_launch import ENV
from triage.patch import apply
from triage.preflight import Checked
from triage.profiling import Profiler
from triage.restart import await_restarted, in_place_blocker, restart, sigterm_blocker
from triage.rundir import RunWriter
from triage.runloop import RunLoop
from triage.sampling import Observation, Sampler
from triage.target import Target

PLAIN_FIRST_ENV = ENV + "PLAIN_FIRST"
#: Why the container restarts, as the run's events say it.
RESTART_WHY = "restarted by triage to start memray; its fixed cost was read without it"

How = Literal["one pod", "two rollouts"]


def one_pod_blocker(cluster: Cluster, checked: Checked, spec: dict[str, Any]) -> str | None:
    """Why memray's fixed cost cannot be read in the profiled pod itself, or None."""
    if (spec.get("replicas") or 1) > 1:
        return "more than one replica"
    why = in_place_blocker({"spec": spec["template"]["spec"]})
    if why is not None:
        return why
    if checked.pod is None:
        return "no running pod to read PID 1's signal handlers from"
    return sigterm_blocker(cluster, namespace=checked.target.namespace,
                           container=checked.target.container, pod=checked.pod)  # fmt: skip


def plain_first(spec: dict[str, Any], container: str) -> dict[str, Any]:
    """`spec` (the profiled one) whose first start in each pod runs without memray."""
    out = copy.deepcopy(spec)
    c = next(c for c in out["template"]["spec"]["containers"] if c["name"] == container)
    env = [e for e in c.get("env") or [] if e.get("name") != PLAIN_FIRST_ENV]
    c["env"] = [*env, {"name": PLAIN_FIRST_ENV, "value": "1"}]
    return out


def read_then_profile(
    cluster: Cluster,
    journal: Journal,
    *,
    loop: RunLoop,
    sampler: Sampler,
    target: Target,
    spec: dict[str, Any],
    timeout: float,
    details: dict[str, Any],
    note: Callable[[str], None],
) -> tuple[Observation, dict[str, Any] | None]:
    """In the pod of plain_first(spec), just rolled out: its idle reading without memray,
    then its container restarted into memray and ready. Returns the reading, and the
    Deployment as rolled out again when the restart had to delete the pod (else None)."""
    before = loop.idle_reading()
    pod = cluster.client.get(PODS.path(target.namespace, before.state.pod))
    sampler.expect_replacement(RESTART_WHY)
    done = restart(cluster, namespace=target.namespace, container=target.container, pod=pod)
    if done.how == "in-place":
        await_restarted(cluster, namespace=target.namespace, pod=done.pod,
                        container=target.container, before=done.restart_count,
                        timeout=timeout)  # fmt: skip
        return before, None
    note(f"memray's fixed cost: {done.fallback}; the pod was deleted, rolling out the "
         "profiled spec")  # fmt: skip
    return before, apply(cluster, journal, spec, timeout=timeout, details=details)


def record_cost(
    writer: RunWriter, profiler: Profiler, before: int | None, loop: RunLoop, how: How
) -> None:
    """memray's fixed cost into the profiler's info and the run's events, or a note why not."""
    profiler.info["fixed_cost_read"] = how
    baseline = loop.rows[0]
    after = baseline.memory.unreclaimable_bytes
    if before is None or after is None:
        profiler.notes.append("memray's fixed cost could not be measured (no memory.stat)")
        return
    if after < before:
        # Noise larger than the cost (or an operator that did not start the same way twice):
        # a zero here would read as "memray is free", which nothing measured says.
        profiler.notes.append(
            f"memray's fixed cost could not be measured: the operator at idle used "
            f"{after / 2**20:.1f} MiB with memray and {before / 2**20:.1f} MiB without"
        )
        return
    cost = after - before
    profiler.info["fixed_cost_bytes"] = cost
    writer.event(
        "profiler-cost",
        f"memray's fixed cost: {cost / 2**20:.1f} MiB at idle (before {before / 2**20:.1f}, "
        f"with memray {after / 2**20:.1f}; {how})",
        fixed_cost_bytes=cost,
        read=how,
    )
