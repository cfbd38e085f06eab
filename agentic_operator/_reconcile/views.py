"""Compact cache views of runner pods, ProjectSettings and managed namespaces.

Like sessions, these informers store only what a reconciler or a metric reads: a runner pod
becomes one small tuple (phase, scheduling, the runner container's state and every
container's restart bookkeeping for the OOM counter), a ProjectSettings its group access
and timeout. In `full` cache mode the raw objects are stored instead, so every reader goes
through the `*_view` functions, which accept both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from agentic_operator._objects import PROJECT_SETTINGS_NAME, RUNNER_CONTAINER, SESSION_LABEL
from agentic_operator.oomcount import effective_restarts

__all__ = [
    "ContainerRestarts",
    "PodView",
    "SettingsView",
    "namespace_transform",
    "pod_transform",
    "pod_view",
    "settings_transform",
    "settings_view",
]

_MESSAGE_CAP = 256


class ContainerRestarts(NamedTuple):
    name: str
    restarts: int  # restartCount, plus one while terminated (see oomcount.effective_restarts)
    reason: str | None  # reason of that latest termination


class PodView(NamedTuple):
    uid: str
    name: str
    session: str
    phase: str
    deleting: bool
    scheduled: bool
    running: bool  # the runner container is in state running
    ready: bool
    started_at: str  # RFC 3339 from the runner container's state, "" if not started
    terminated_reason: str
    exit_code: int | None
    waiting_reason: str
    message: str
    containers: tuple[ContainerRestarts, ...]
    created_at: str = ""  # RFC 3339, the pod's creationTimestamp


class SettingsView(NamedTuple):
    # No uid or resourceVersion: reconcile reads the live object; a status-only change
    # still shows up through `ready`, a spec change through the fields below.
    generation: int
    group_access: tuple[tuple[str, str], ...]
    inactivity_timeout: int | None
    # status says every child object was made for this spec (groupBindingsCreated matches)
    ready: bool = False


def _container_restarts(st: dict[str, Any]) -> ContainerRestarts:
    state = st.get("state") or {}
    last = st.get("lastState") or {}
    term = state.get("terminated")
    last_term = last.get("terminated")
    restarts, reason = effective_restarts(
        restart_count=int(st.get("restartCount") or 0),
        terminated_reason=(str(term.get("reason") or "Error") if isinstance(term, dict) else None),
        last_terminated_reason=(
            str(last_term.get("reason") or "Error") if isinstance(last_term, dict) else None
        ),
    )
    return ContainerRestarts(str(st.get("name") or ""), restarts, reason)


def _from_pod(obj: dict[str, Any]) -> PodView:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    statuses = [s for s in status.get("containerStatuses") or () if isinstance(s, dict)]
    runner = next((s for s in statuses if s.get("name") == RUNNER_CONTAINER), None)
    if runner is None and statuses:
        runner = statuses[0]
    state = (runner or {}).get("state") or {}
    running = state.get("running")
    term = state.get("terminated")
    waiting = state.get("waiting")
    scheduled = False
    for cond in status.get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled":
            scheduled = cond.get("status") == "True"
    message = ""
    if isinstance(term, dict):
        message = str(term.get("message") or "")
    elif isinstance(waiting, dict):
        message = str(waiting.get("message") or "")
    if not message:
        message = str(status.get("message") or "")
    exit_code = term.get("exitCode") if isinstance(term, dict) else None
    return PodView(
        uid=str(meta.get("uid") or ""),
        name=str(meta.get("name") or ""),
        session=str(labels.get(SESSION_LABEL) or ""),
        phase=str(status.get("phase") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        scheduled=scheduled,
        running=isinstance(running, dict),
        ready=bool((runner or {}).get("ready")),
        started_at=str(running.get("startedAt") or "") if isinstance(running, dict) else "",
        terminated_reason=str(term.get("reason") or "") if isinstance(term, dict) else "",
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        waiting_reason=str(waiting.get("reason") or "") if isinstance(waiting, dict) else "",
        message=message[:_MESSAGE_CAP],
        containers=tuple(_container_restarts(s) for s in statuses),
        created_at=str(meta.get("creationTimestamp") or ""),
    )


def pod_transform(obj: dict[str, Any]) -> PodView:
    return _from_pod(obj)


def pod_view(value: PodView | dict[str, Any]) -> PodView:
    return value if isinstance(value, PodView) else _from_pod(value)


def _from_settings(obj: dict[str, Any]) -> SettingsView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    access: list[tuple[str, str]] = []
    for item in spec.get("groupAccess") or ():
        if isinstance(item, dict) and item.get("groupName") and item.get("role"):
            access.append((str(item["groupName"]), str(item["role"])))
    timeout = spec.get("inactivityTimeoutSeconds")
    status = obj.get("status") or {}
    ready = (
        status.get("scheduledSessionRBACReady") is True
        and status.get("limitRangeReady") is True
        and status.get("groupBindingsCreated") == len(set(access))
    )
    return SettingsView(
        generation=int(meta.get("generation") or 0),
        group_access=tuple(access),
        inactivity_timeout=timeout if isinstance(timeout, int) and timeout >= 0 else None,
        ready=ready,
    )


def settings_transform(obj: dict[str, Any]) -> SettingsView | None:
    # Only the singleton matters; others are ignored (and reported by the reconciler).
    if (obj.get("metadata") or {}).get("name") != PROJECT_SETTINGS_NAME:
        return None
    return _from_settings(obj)


def settings_view(value: SettingsView | dict[str, Any]) -> SettingsView:
    return value if isinstance(value, SettingsView) else _from_settings(value)


def namespace_transform(obj: dict[str, Any]) -> bool:
    """A managed namespace is only a key; True never compares unequal, so no MODIFIED noise."""
    return True
