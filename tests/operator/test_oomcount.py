"""OOMCounter semantics: cumulative, never lost to a missed observation, bounded state."""

from __future__ import annotations

import pytest

from agentic_operator.oomcount import OOMCounter, effective_restarts

pytestmark = pytest.mark.unit

K = ("ns1", "pod-a", "runner")


def test_counts_each_oom_restart_once_and_stays_cumulative() -> None:
    c = OOMCounter()
    assert c.observe(K, 0, None, now=0).confirmed == 0
    assert c.observe(K, 1, "OOMKilled", now=1).confirmed == 1
    # The same restart seen again (a resync, a re-delivered event) is not a new OOM.
    assert c.observe(K, 1, "OOMKilled", now=2).confirmed == 0
    assert c.observe(K, 1, "OOMKilled", now=3).confirmed == 0
    assert c.observe(K, 2, "OOMKilled", now=4).confirmed == 1
    assert c.total("ns1") == 2
    assert c.unobserved("ns1") == 0


def test_dropped_observation_is_not_lost() -> None:
    """The sample that carried the OOM is dropped; the next one still carries the advance."""
    c = OOMCounter()
    c.observe(K, 0, None, now=0)
    # restart 1 (OOMKilled) happened, its observation was dropped; we next see it later.
    c.observe(K, 1, "OOMKilled", now=50)
    assert c.total() == 1


def test_jump_of_more_than_one_is_reported_as_unobserved() -> None:
    c = OOMCounter()
    c.observe(K, 1, None, now=0)
    obs = c.observe(K, 4, "OOMKilled", now=1)
    assert (obs.confirmed, obs.unobserved) == (1, 2)
    assert c.total("ns1") == 1  # lower bound
    assert c.total("ns1") + c.unobserved("ns1") == 3  # upper bound


def test_other_reason_moves_forward_without_counting() -> None:
    c = OOMCounter()
    c.observe(K, 0, None, now=0)
    assert c.observe(K, 1, "Error", now=1).confirmed == 0
    assert c.observe(K, 3, "Completed", now=2).unobserved == 1
    assert c.observe(K, 4, "OOMKilled", now=3).confirmed == 1
    assert c.totals() == {"ns1": 1}
    assert c.unobserved_totals() == {"ns1": 1}


def test_first_observation_counts_visible_oom_once_but_not_earlier_restarts() -> None:
    c = OOMCounter()
    obs = c.observe(K, 7, "OOMKilled", now=0)
    assert obs.first and obs.confirmed == 1 and obs.unobserved == 0
    assert c.observe(K, 7, "OOMKilled", now=1).confirmed == 0
    assert c.total() == 1


def test_forget_drops_state_but_keeps_totals() -> None:
    c = OOMCounter()
    c.observe(K, 1, "OOMKilled", now=0)
    c.observe(("ns1", "pod-a", "sidecar"), 0, None, now=0)
    c.observe(("ns1", "pod-b", "runner"), 0, None, now=0)
    assert c.forget("ns1", "pod-a") == 2
    assert len(c) == 1
    assert c.total("ns1") == 1


def test_new_pod_with_same_name_is_a_new_incarnation() -> None:
    c = OOMCounter()
    c.observe(K, 3, "OOMKilled", now=0)
    # The delete was missed; the replacement pod starts from restartCount 0 again.
    obs = c.observe(K, 0, None, now=1)
    assert obs.first and obs.confirmed == 0
    assert c.observe(K, 1, "OOMKilled", now=2).confirmed == 1
    assert c.total() == 2


def test_ttl_evicts_idle_state_and_keeps_totals() -> None:
    c = OOMCounter(ttl_seconds=100)
    c.observe(K, 1, "OOMKilled", now=0)
    c.observe(("ns2", "p", "c"), 0, None, now=90)
    assert c.evict_expired(now=150) == 1
    assert len(c) == 1
    assert c.total("ns1") == 1


def test_size_cap_bounds_state() -> None:
    c = OOMCounter(max_entries=100)
    for i in range(1000):
        c.observe(("ns", f"pod-{i}", "c"), 1, "OOMKilled", now=float(i))
    assert len(c) == 100
    assert c.total("ns") == 1000


def test_sweep_happens_during_observe() -> None:
    c = OOMCounter(ttl_seconds=10)
    for i in range(100):
        c.observe(("ns", f"pod-{i}", "c"), 0, None, now=float(i))
    # Each observation sweeps at most once per ttl/10; old pods vanish without forget().
    assert len(c) <= 12


def test_effective_restarts_for_restart_policy_never() -> None:
    # A runner (restartPolicy Never) OOM-killed: terminated now, restartCount stays 0.
    assert effective_restarts(
        restart_count=0, terminated_reason="OOMKilled", last_terminated_reason=None
    ) == (
        1,
        "OOMKilled",
    )
    # Restarted by the kubelet: the restart and lastState carry the same termination.
    assert effective_restarts(
        restart_count=1, terminated_reason=None, last_terminated_reason="OOMKilled"
    ) == (
        1,
        "OOMKilled",
    )
    c = OOMCounter()
    c.observe(
        K,
        *effective_restarts(restart_count=0, terminated_reason=None, last_terminated_reason=None),
        now=0,
    )
    c.observe(
        K,
        *effective_restarts(
            restart_count=0, terminated_reason="OOMKilled", last_terminated_reason=None
        ),
        now=1,
    )
    c.observe(
        K,
        *effective_restarts(
            restart_count=1, terminated_reason=None, last_terminated_reason="OOMKilled"
        ),
        now=2,
    )
    assert c.total() == 1


def _look(
    c: OOMCounter, *, rc: int, state: str | None, last: str | None, now: float, uid: str | None
) -> int:
    c.observe(
        K,
        *effective_restarts(restart_count=rc, terminated_reason=state, last_terminated_reason=last),
        now=now,
        uid=uid,
    )
    return c.total()


def test_crash_loop_flip_from_terminated_to_waiting_is_not_a_second_oom() -> None:
    """Recorded on the local node: OOMKilled, restarted, OOMKilled again, CrashLoopBackOff.

    The kubelet shows the second kill as state.terminated with restartCount still 1, then
    moves the container to waiting (back-off) with restartCount still 1 and the kill in
    lastState, and only then restarts it as restartCount 2. Two kills, never three.
    """
    c = OOMCounter()
    seq = [
        (0, None, None),  # running
        (1, None, "OOMKilled"),  # first kill, restarted
        (1, "OOMKilled", "OOMKilled"),  # second kill, not yet restarted
        (1, None, "OOMKilled"),  # waiting in CrashLoopBackOff: the folded count drops back
        (1, None, "OOMKilled"),
        (2, None, "OOMKilled"),  # restarted after the back-off
    ]
    totals = [
        _look(c, rc=rc, state=st, last=last, now=i, uid="u1")
        for i, (rc, st, last) in enumerate(seq)
    ]
    assert totals == [0, 1, 2, 2, 2, 2]
    # A third kill still counts.
    assert _look(c, rc=2, state="OOMKilled", last="OOMKilled", now=9, uid="u1") == 3


def test_a_new_uid_under_the_same_name_is_a_new_pod() -> None:
    c = OOMCounter()
    assert _look(c, rc=0, state="OOMKilled", last=None, now=0, uid="old") == 1
    # Replaced (the runner pod is recreated under its name): restartCount 0, running.
    obs = c.observe(K, 0, None, now=1, uid="new")
    assert obs.first and obs.confirmed == 0
    assert _look(c, rc=0, state="OOMKilled", last=None, now=2, uid="new") == 2


def test_oomcount_is_dependency_free() -> None:
    import ast
    import pathlib

    import agentic_operator.oomcount as mod

    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "threading", "time", "collections", "dataclasses"}
