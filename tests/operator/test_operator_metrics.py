"""The operator's own metrics (`_operator_metrics`): upstream's names, a namespace label on
the session counters only, a ceiling on the namespaces that get series, and series dropped
when a namespace goes away."""

from __future__ import annotations

import pytest

from agentic_operator._metrics import new_registry, render
from agentic_operator._operator_metrics import OVERFLOW_NAMESPACE, OperatorMetrics

pytestmark = pytest.mark.unit


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_session_counters_carry_the_namespace_histograms_do_not() -> None:
    reg = new_registry()
    m = OperatorMetrics(reg, max_namespaces=10)
    m.session_started("p1")
    m.phase_transition("p1", "Pending", "Creating")
    m.session_completed("p1", "Completed")
    m.session_error("p1", "Pending", "ConflictError")
    m.startup(3.0)
    m.pod_created(0.1)
    m.token_provisioned(0.2)
    m.reconcile_done("Running", True, 0.01)
    m.oom_observed("p1", confirmed=2, unobserved=1)
    get = reg.get_sample_value
    assert get("ambient_sessions_total", {"namespace": "p1"}) == 1
    assert (
        get("ambient_sessions_completed_total", {"namespace": "p1", "final_phase": "Completed"})
        == 1
    )
    assert (
        get(
            "ambient_session_phase_transitions_total",
            {"namespace": "p1", "from_phase": "Pending", "to_phase": "Creating"},
        )
        == 1
    )
    assert (
        get(
            "ambient_session_errors_total",
            {"namespace": "p1", "phase": "Pending", "error_type": "ConflictError"},
        )
        == 1
    )
    assert get("ambient_runner_oom_kills_total", {"namespace": "p1"}) == 2
    assert get("ambient_runner_unobserved_restarts_total", {"namespace": "p1"}) == 1
    text = render(reg).decode()
    for hist in (
        "ambient_session_startup_duration_seconds",
        "ambient_pod_creation_duration_seconds",
        "ambient_token_provision_duration_seconds",
        "ambient_reconcile_duration_seconds",
    ):
        assert f"# TYPE {hist} histogram" in text
        assert all("namespace=" not in line for line in text.splitlines() if line.startswith(hist))
    assert get("ambient_session_startup_duration_seconds_count", {}) == 1


def test_namespaces_beyond_the_cap_share_the_overflow_series() -> None:
    reg = new_registry()
    m = OperatorMetrics(reg, max_namespaces=3)
    for i in range(50):
        m.session_started(f"ns-{i}")
        m.phase_transition(f"ns-{i}", "Pending", "Creating")
    text = render(reg).decode()
    assert len(_series(text, "ambient_sessions_total")) == 4  # three namespaces + overflow
    assert reg.get_sample_value("ambient_sessions_total", {"namespace": OVERFLOW_NAMESPACE}) == 47
    assert len(m.namespaces) == 3


def test_a_namespace_that_goes_away_loses_its_series_and_frees_its_slot() -> None:
    reg = new_registry()
    m = OperatorMetrics(reg, max_namespaces=1)
    m.session_started("gone")
    m.session_completed("gone", "Failed")
    m.session_error("gone", "Running", "ApiError")
    m.oom_observed("gone", confirmed=1, unobserved=0)
    m.session_started("late")  # over the cap while "gone" holds the only slot
    assert reg.get_sample_value("ambient_sessions_total", {"namespace": OVERFLOW_NAMESPACE}) == 1
    m.forget_namespace("gone")
    text = render(reg).decode()
    assert 'namespace="gone"' not in text
    m.session_started("late")
    assert reg.get_sample_value("ambient_sessions_total", {"namespace": "late"}) == 1
    m.forget_namespace("never-seen")  # harmless
