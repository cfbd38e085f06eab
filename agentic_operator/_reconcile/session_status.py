"""What a session's status becomes, as pure functions of the live object.

Every status write is `mutate(live object, copy of its status) -> new status | None`, and
the writer re-applies the same function to the freshest object after a 409. So each
function checks the phase it starts from and returns None when the world has moved on
(another writer marked the session Completed, a second worker already wrote it): a stale
worker can never undo a newer state. Keeping them apart from the reconciler's control flow
also lets the lifecycle table (which phase goes where on what) be read in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agentic_operator._conditions import now_rfc3339, set_condition
from agentic_operator._reconcile.views import PodView
from agentic_operator._session_store import parse_time
from agentic_operator.contract import (
    FATAL_WAITING_REASONS,
    PREREQUISITE_EXIT_CODE,
    REASON_PREREQUISITE_FAILED,
    REASON_RUNNER_SECRET_MISSING,
    RUNNER_SECRETS_NAME,
    STOP_REASON_ANNOTATION,
    TERMINAL_PHASES,
    TRANSIENT_CONFIG_ERROR,
    TRANSIENT_CONFIG_GRACE,
)

__all__ = [
    "Mutation",
    "creating",
    "failed",
    "from_pod",
    "init_pending",
    "phase_of",
    "pod_missing",
    "restart",
    "runner_secret_missing",
    "spec_applied",
    "spec_failed",
    "stopped",
    "stopping",
]

Obj = dict[str, Any]
Mutation = Callable[[Obj, Obj], Obj | None]
"""(live object, copy of its status) -> the new status, or None when nothing must change."""

_MESSAGE_CAP = 512


def _cond(status: Obj, obj: Obj, ctype: str, to: str, reason: str, message: str = "") -> None:
    # Positional in the order a condition is read: type, status, reason, message.
    status["conditions"], _ = set_condition(
        status.get("conditions"),
        ctype=ctype,
        status=to,
        reason=reason,
        message=message[:_MESSAGE_CAP],
        observed_generation=int((obj.get("metadata") or {}).get("generation") or 0),
    )


def phase_of(status: Obj) -> str:
    return str(status.get("phase") or "")


def _from(*phases: str) -> Callable[[Mutation], Mutation]:
    """The transition starts only from `phases`: a session anywhere else is left alone (None),
    so a worker holding a stale read cannot undo what a newer writer did."""

    def guard(mutate: Mutation) -> Mutation:
        @functools.wraps(mutate)
        def guarded(obj: Obj, status: Obj) -> Obj | None:
            return mutate(obj, status) if phase_of(status) in phases else None

        return guarded

    return guard


def init_pending(obj: Obj, status: Obj) -> Obj | None:
    # The CRD defaults phase to Pending whenever anyone writes a status first, so a Pending
    # session without a startTime has not been initialised by us yet either.
    if phase_of(status) not in ("", "Pending") or status.get("startTime"):
        return None
    status["phase"] = "Pending"
    status["startTime"] = now_rfc3339()
    return status


def restart(obj: Obj, status: Obj) -> Obj | None:
    """Back to Pending as upstream restarts: a new startTime and nothing of the last run.

    lastActivityTime goes too: left in place, the inactivity check would compare against
    the previous run's last activity and stop the restarted session at once.
    """
    if phase_of(status) in ("Pending", "Creating", "Running"):
        return None
    status["phase"] = "Pending"
    status["startTime"] = now_rfc3339()
    for stale in ("completionTime", "stoppedReason", "lastActivityTime"):
        status.pop(stale, None)
    _cond(status, obj, "Ready", "False", "Restarting", "Preparing to start session")
    return status


@_from("Pending")
def runner_secret_missing(obj: Obj, status: Obj) -> Obj | None:
    _cond(
        status,
        obj,
        "SecretsReady",
        "False",
        REASON_RUNNER_SECRET_MISSING,
        f"Secret {RUNNER_SECRETS_NAME} missing",
    )
    return status


@_from("Running", "Creating")
def stopping(obj: Obj, status: Obj) -> Obj | None:
    status["phase"] = "Stopping"
    _cond(status, obj, "Ready", "False", "Stopping", "Session is stopping")
    return status


def _stop_reason(obj: Obj) -> str:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return "inactivity" if ann.get(STOP_REASON_ANNOTATION) == "inactivity" else "user"


@_from("Stopping", "Pending")
def stopped(obj: Obj, status: Obj) -> Obj | None:
    reason = _stop_reason(obj)
    cond_reason = "InactivityTimeout" if reason == "inactivity" else "UserStopped"
    status["phase"] = "Stopped"
    status["completionTime"] = now_rfc3339()
    status["stoppedReason"] = reason
    _cond(status, obj, "Ready", "False", cond_reason, f"Session stopped ({reason})")
    _cond(status, obj, "PodCreated", "False", cond_reason, "Runner pod deleted")
    _cond(status, obj, "RunnerStarted", "False", cond_reason, f"Runner stopped ({reason})")
    return status


def creating(created: bool) -> Mutation:
    @_from("Pending")
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        status["phase"] = "Creating"
        status["observedGeneration"] = int((obj.get("metadata") or {}).get("generation") or 0)
        _cond(
            status,
            obj,
            "SecretsReady",
            "True",
            "AllRequiredSecretsFound",
            "Runner secret available",
        )
        _cond(
            status,
            obj,
            "PodCreated",
            "True",
            "PodCreated" if created else "PodExists",
            "Runner pod created" if created else "Runner pod already exists",
        )
        return status

    return mutate


@_from("Creating", "Running")
def pod_missing(obj: Obj, status: Obj) -> Obj | None:
    status["phase"] = "Pending"
    _cond(status, obj, "PodCreated", "False", "PodMissing", "Pod not found, will recreate")
    _cond(status, obj, "Ready", "False", "PodMissing", "Runner pod not found")
    return status


def failed(reason: str, message: str) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        if phase_of(status) in TERMINAL_PHASES:
            return None
        status["phase"] = "Failed"
        status["completionTime"] = now_rfc3339()
        _cond(status, obj, "Ready", "False", reason, message)
        return status

    return mutate


def _runner_failed(obj: Obj, status: Obj, reason: str, message: str) -> Obj:
    """The runner ended or cannot start, for good: the session is Failed and not ready."""
    status["phase"] = "Failed"
    status["completionTime"] = now_rfc3339()
    _cond(status, obj, "RunnerStarted", "False", reason, message)
    _cond(status, obj, "Ready", "False", reason, message)
    return status


def _finished(obj: Obj, status: Obj, pod: PodView) -> Obj:
    """The runner ended: exit 0 completes the session, 2 is a failed prerequisite, else Failed."""
    if pod.phase == "Succeeded":
        status["phase"] = "Completed"
        status["completionTime"] = now_rfc3339()
        _cond(status, obj, "RunnerStarted", "False", "Completed", "Runner finished")
        _cond(status, obj, "Ready", "False", "Completed", "Session completed")
        return status
    if pod.exit_code == PREREQUISITE_EXIT_CODE:
        reason = REASON_PREREQUISITE_FAILED
        message = f"Runner prerequisite check failed (exit code {pod.exit_code})"
    else:
        reason = pod.terminated_reason or "PodFailed"
        detail = f"exit code {pod.exit_code}" if pod.exit_code is not None else pod.phase
        message = f"Runner failed: {reason} ({detail})"
    if pod.message:
        message += f": {pod.message}"
    return _runner_failed(obj, status, reason, message)


def _cache_timeout(pod: PodView) -> bool:
    """The container waits on the kubelet's own cache, not on a fault in the pod."""
    return pod.waiting_reason == "CreateContainerConfigError" and bool(
        TRANSIENT_CONFIG_ERROR.match(pod.message)
    )


def _kubelet_retries(pod: PodView, now: float) -> bool:
    """A cache timeout within the grace (a pod of unknown age is given it)."""
    if not _cache_timeout(pod):
        return False
    created = parse_time(pod.created_at)
    return created is None or now - created < TRANSIENT_CONFIG_GRACE


def from_pod(pod: PodView, now: float) -> Mutation:
    """Creating/Running follows the runner pod: scheduled, started, finished or stuck for good.

    `now` (epoch seconds) decides whether a kubelet that cannot read the runner's Secret
    yet is still given time.
    """

    @_from("Creating", "Running")
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        phase = phase_of(status)
        before = status.get("conditions")
        if pod.phase in ("Succeeded", "Failed"):
            return _finished(obj, status, pod)
        if pod.waiting_reason in FATAL_WAITING_REASONS and not _kubelet_retries(pod, now):
            message = f"Runner cannot start: {pod.waiting_reason}"
            if pod.message:
                message += f": {pod.message}"
            if _cache_timeout(pod):
                message += f" (still, {TRANSIENT_CONFIG_GRACE:.0f}s after the pod was made)"
            return _runner_failed(obj, status, pod.waiting_reason, message)
        if pod.deleting:
            return None
        if pod.scheduled:
            _cond(status, obj, "PodScheduled", "True", "Scheduled", "Runner pod scheduled")
        else:
            _cond(
                status,
                obj,
                "PodScheduled",
                "False",
                "Unschedulable",
                pod.message or "Waiting for a node",
            )
        if pod.running:
            status["phase"] = "Running"
            _cond(
                status,
                obj,
                "RunnerStarted",
                "True",
                "ContainerRunning",
                "Runner container started",
            )
            _cond(status, obj, "Ready", "True", "Running", "Session is running")
        elif pod.waiting_reason:
            _cond(status, obj, "RunnerStarted", "False", pod.waiting_reason, pod.message)
        if status.get("phase") == phase and status.get("conditions") == before:
            return None
        return status

    return mutate


def spec_applied(obj: Obj, status: Obj) -> Obj | None:
    spec = obj.get("spec") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    status["observedGeneration"] = generation
    status["reconciledRepos"] = [
        {"url": r["url"], "branch": r.get("branch", "main"), "status": "Ready"}
        for r in spec.get("repos") or ()
        if isinstance(r, dict) and r.get("url")
    ]
    workflow = spec.get("activeWorkflow")
    if isinstance(workflow, dict):
        status["reconciledWorkflow"] = {
            **{k: workflow[k] for k in ("gitUrl", "branch", "path") if k in workflow},
            "status": "Active",
            "appliedAt": now_rfc3339(),
        }
    _cond(
        status,
        obj,
        "Reconciled",
        "True",
        "SpecApplied",
        f"Successfully reconciled generation {generation}",
    )
    return status


def spec_failed(message: str) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        _cond(status, obj, "Reconciled", "False", "RepoReconciliationFailed", message)
        return status

    return mutate
