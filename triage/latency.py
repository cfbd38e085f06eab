"""Runner start-up latency of a burst: each session's runner pod followed through its stages.

The agent-sandbox stress tool splits start-up into created -> pod created -> scheduled ->
running -> ready; so does this, polling the runner pods by label. Each stage's time is when
it was first seen, bounded below by the apiserver's whole-second timestamps (a poll can lag,
a timestamp cannot lead), and never earlier than the stage before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from agentic_operator.contract import RUNNER_APP_LABEL, SESSION_LABEL
from agentic_operator.resources import PODS
from triage.cluster import Cluster
from triage.rundir import LatencyRow
from triage.rundir.format import LATENCY_STAGES


def _parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def observe_pod(row: LatencyRow, pod: dict[str, Any], *, seen_at: float) -> LatencyRow:
    """`row` advanced by one look at its runner pod."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    containers = status.get("containerStatuses") or []
    sched = conditions.get("PodScheduled") or {}
    if sched.get("status") == "False":
        waiting = f"{sched.get('reason') or 'Unschedulable'}: {sched.get('message') or ''}"
    else:
        reasons = [
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in containers
            if "waiting" in (c.get("state") or {})
        ]
        waiting = next((r for r in reasons if r), "Pending" if not containers else "")
    reached = {
        "pod_created": True,
        "scheduled": sched.get("status") == "True",
        "running": any("running" in (c.get("state") or {}) for c in containers),
        "ready": (conditions.get("Ready") or {}).get("status") == "True",
    }
    values: dict[str, float | None] = {s: getattr(row, s) for s in LATENCY_STAGES}
    for stage, ok in reached.items():
        if ok and values[stage] is None:
            values[stage] = seen_at
    previous = values["created"]
    for stage in LATENCY_STAGES[1:]:
        value = values[stage]
        if value is not None and previous is not None and value < previous:
            values[stage] = previous
        previous = values[stage] if value is not None else previous
    return replace(
        row,
        created=values["created"],
        pod_created=values["pod_created"],
        scheduled=values["scheduled"],
        running=values["running"],
        ready=values["ready"],
        waiting="" if values["running"] is not None else waiting,
    )


def track_latency(
    cluster: Cluster,
    *,
    created: dict[tuple[str, str], float],
    timeout: float,
    poll: float = 0.25,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[LatencyRow]:
    """Poll the runner pods of `created` sessions until every one is Ready or `timeout`."""
    rows = {
        key: LatencyRow(session=key[1], namespace=key[0], created=when)
        for key, when in created.items()
    }
    namespaces = sorted({ns for ns, _ in created})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        for ns in namespaces:
            seen_at = time.time()
            doc = cluster.client.list(
                PODS.path(ns), params={"labelSelector": f"app={RUNNER_APP_LABEL}"}
            )
            for pod in doc.get("items", []):
                session = (pod["metadata"].get("labels") or {}).get(SESSION_LABEL) or ""
                row = rows.get((ns, session))
                if row is not None:
                    rows[(ns, session)] = observe_pod(row, pod, seen_at=seen_at)
        if all(r.ready is not None for r in rows.values()):
            break
        time.sleep(poll)
    return sorted(rows.values(), key=lambda r: (r.namespace, r.session))
