"""Status mutations (`_reconcile.session_status`) as pure functions of the live object.

Each one checks the phase it starts from, so re-applying it after a 409 to an object that
another writer moved on (Completed, Failed) changes nothing. The cluster tests in
test_sessions.py show the same rules on real objects; these pin every branch.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from agentic_operator._reconcile import session_status as st
from agentic_operator._reconcile.views import PodView
from agentic_operator.contract import FATAL_WAITING_REASONS, TRANSIENT_CONFIG_GRACE

pytestmark = pytest.mark.unit

Obj = dict[str, Any]


def _obj(status: Obj) -> Obj:
    return {"metadata": {"name": "s", "generation": 3}, "spec": {}, "status": status}


def _apply(mutate: st.Mutation, status: Obj) -> Obj | None:
    obj = _obj(status)
    return mutate(obj, copy.deepcopy(status))


def _cond(status: Obj, ctype: str) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == ctype)


#: The reconciler's clock for from_pod: 2027-01-15T08:00:00Z.
NOW = 1_800_000_000.0


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: A scheduled runner pod (phase Running) whose runner container is not running yet.
_SCHEDULED = PodView(
    uid="p",
    name="s-runner",
    session="s",
    phase="Running",
    deleting=False,
    scheduled=True,
    running=False,
    ready=False,
    started_at="",
    terminated_reason="",
    exit_code=None,
    waiting_reason="",
    message="",
    containers=(),
)


def _pod(**kw: Any) -> PodView:
    """The scheduled pod, with the fields in `kw` changed."""
    return _SCHEDULED._replace(**kw)


def test_restart_resets_what_the_last_run_left() -> None:
    before = {
        "phase": "Stopped",
        "startTime": "2020-01-01T00:00:00Z",
        "completionTime": "2020-01-01T01:00:00Z",
        "lastActivityTime": "2020-01-01T00:30:00Z",
        "stoppedReason": "inactivity",
    }
    after = _apply(st.restart, before)
    assert after is not None
    assert after["phase"] == "Pending"
    assert after["startTime"] != before["startTime"]
    assert not {"completionTime", "lastActivityTime", "stoppedReason"} & set(after)
    assert _cond(after, "Ready")["reason"] == "Restarting"
    for live in ("Pending", "Creating", "Running"):
        assert _apply(st.restart, {"phase": live}) is None


def _failed(exit_code: int, terminated_reason: str, reason: str) -> tuple[PodView, str, str, str]:
    """A runner that exited with `exit_code`: the session fails with `reason`, naming the code."""
    pod = _pod(phase="Failed", exit_code=exit_code, terminated_reason=terminated_reason)
    return pod, "Failed", reason, f"exit code {exit_code}"


@pytest.mark.parametrize(
    ("pod", "phase", "reason", "in_message"),
    [
        (
            _pod(phase="Succeeded", exit_code=0, terminated_reason="Completed"),
            "Completed",
            "Completed",
            "",
        ),
        _failed(2, "Error", "PrerequisiteFailed"),
        _failed(3, "Error", "Error"),
        _failed(137, "OOMKilled", "OOMKilled"),
    ],
)
def test_runner_exit_decides_the_final_phase(
    pod: PodView, phase: str, reason: str, in_message: str
) -> None:
    for start in ("Creating", "Running"):
        after = _apply(st.from_pod(pod, NOW), {"phase": start})
        assert after is not None
        assert after["phase"] == phase
        assert after["completionTime"]
        ready = _cond(after, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason)
        assert in_message in ready.get("message", "")


@pytest.mark.parametrize("reason", sorted(FATAL_WAITING_REASONS))
def test_fatal_waiting_reasons_fail_the_session(reason: str) -> None:
    pod = _pod(phase="Pending", waiting_reason=reason, message="back-off pulling image")
    after = _apply(st.from_pod(pod, NOW), {"phase": "Creating"})
    assert after is not None
    assert after["phase"] == "Failed" and after["completionTime"]
    assert _cond(after, "Ready")["reason"] == reason
    assert "back-off pulling image" in _cond(after, "Ready")["message"]


def test_a_transient_waiting_reason_is_only_reported() -> None:
    pod = _pod(phase="Pending", waiting_reason="ContainerCreating")
    after = _apply(st.from_pod(pod, NOW), {"phase": "Creating"})
    assert after is not None and after["phase"] == "Creating"
    assert _cond(after, "RunnerStarted")["reason"] == "ContainerCreating"


@pytest.mark.parametrize(
    ("message", "fails"),
    [
        # The kubelet could not read the Secret from its cache within its second: it tries
        # again on the next sync, so the session waits and says why.
        ("failed to sync secret cache: timed out waiting for the condition", False),
        ("failed to sync configmap cache: timed out waiting for the condition", False),
        # The pod's configuration is wrong (a required Secret or key that does not exist):
        # it will not start without a change.
        ('secret "ambient-runner-secrets" not found', True),
        ("couldn't find key ANTHROPIC_API_KEY in Secret ns/ambient-runner-secrets", True),
        ("", True),
    ],
)
def test_a_config_error_fails_the_session_only_when_the_pod_is_at_fault(
    message: str, fails: bool
) -> None:
    pod = _pod(phase="Pending", waiting_reason="CreateContainerConfigError", message=message)
    after = _apply(st.from_pod(pod, NOW), {"phase": "Creating"})
    assert after is not None
    assert after["phase"] == ("Failed" if fails else "Creating")
    started = _cond(after, "RunnerStarted")
    assert (started["status"], started["reason"]) == ("False", "CreateContainerConfigError")
    assert message in started.get("message", "")
    if not fails:
        assert "completionTime" not in after
        assert not any(c["type"] == "Ready" for c in after.get("conditions", []))


@pytest.mark.parametrize(
    ("age", "fails"),
    [(0.0, False), (TRANSIENT_CONFIG_GRACE - 5, False), (TRANSIENT_CONFIG_GRACE + 5, True)],
)
def test_a_kubelet_that_cannot_read_the_secret_is_waited_for_only_so_long(
    age: float, fails: bool
) -> None:
    # A kubelet still unable to read the Secret minutes after the pod was made is broken,
    # not slow: past the grace the session fails and says how long it waited.
    pod = _pod(
        phase="Pending",
        waiting_reason="CreateContainerConfigError",
        message="failed to sync secret cache: timed out waiting for the condition",
        created_at=_rfc3339(NOW - age),
    )
    after = _apply(st.from_pod(pod, NOW), {"phase": "Creating"})
    assert after is not None
    assert after["phase"] == ("Failed" if fails else "Creating")
    if fails:
        ready = _cond(after, "Ready")
        assert ready["reason"] == "CreateContainerConfigError"
        assert f"{TRANSIENT_CONFIG_GRACE:.0f}s after the pod was made" in ready["message"]


def test_nothing_follows_a_pod_once_another_writer_ended_the_session() -> None:
    for terminal in ("Completed", "Failed", "Stopped"):
        assert _apply(st.from_pod(_pod(running=True), NOW), {"phase": terminal}) is None
        assert _apply(st.creating(True), {"phase": terminal}) is None
        assert _apply(st.failed("X", "y"), {"phase": terminal}) is None
        assert _apply(st.runner_secret_missing, {"phase": terminal}) is None


def test_missing_runner_secret_is_a_condition_not_a_phase() -> None:
    after = _apply(st.runner_secret_missing, {"phase": "Pending", "startTime": "t"})
    assert after is not None and after["phase"] == "Pending"
    cond = _cond(after, "SecretsReady")
    assert (cond["status"], cond["reason"]) == ("False", "RunnerSecretMissing")
    assert "ambient-runner-secrets" in cond["message"]
    # Written once: the same mutation on its own result changes nothing.
    again = _apply(st.runner_secret_missing, after)
    assert again == after


def test_creating_records_secrets_and_pod() -> None:
    after = _apply(st.creating(False), {"phase": "Pending"})
    assert after is not None and after["phase"] == "Creating"
    assert after["observedGeneration"] == 3
    assert _cond(after, "SecretsReady")["status"] == "True"
    assert _cond(after, "PodCreated")["reason"] == "PodExists"
