"""Compact cache views (`_reconcile.views`) of runner pods and ProjectSettings."""

from __future__ import annotations

import pytest

from agentic_operator._reconcile.views import pod_transform, settings_transform

pytestmark = pytest.mark.unit


def test_pod_view_reads_runner_state() -> None:
    pod = {
        "metadata": {"name": "s1-runner", "uid": "p", "labels": {"agentic-session": "s1"}},
        "status": {
            "phase": "Failed",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "ambient-code-runner",
                    "restartCount": 0,
                    "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
            ],
        },
    }
    v = pod_transform(pod)
    assert (v.session, v.phase, v.scheduled, v.terminated_reason, v.exit_code) == (
        "s1",
        "Failed",
        True,
        "OOMKilled",
        137,
    )
    assert v.containers[0].restarts == 1 and v.containers[0].reason == "OOMKilled"


def test_settings_view_ignores_other_names() -> None:
    assert settings_transform({"metadata": {"name": "other"}, "spec": {}}) is None
    v = settings_transform(
        {
            "metadata": {"name": "projectsettings"},
            "spec": {
                "groupAccess": [{"groupName": "g", "role": "view"}],
                "inactivityTimeoutSeconds": 60,
            },
            "status": {
                "groupBindingsCreated": 1,
                "scheduledSessionRBACReady": True,
                "limitRangeReady": True,
            },
        }
    )
    assert (
        v is not None
        and v.inactivity_timeout == 60
        and v.ready
        and v.group_access == (("g", "view"),)
    )
