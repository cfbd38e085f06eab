"""The bulk loader against the real apiserver: right objects, right labels, right phase, gone after cleanup."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from agentic_operator.contract import AGENTIC_SESSIONS, MANAGED_LABEL
from tests.conftest import KUBECONFIG, kubectl
from triage import bodies, load
from triage.cleanup import cleanup, run_namespaces
from triage.cluster import Cluster, connect
from triage.scenario import get


def _run_id() -> str:
    return f"20990101-000000-test-{secrets.token_hex(2)}"


@pytest.fixture
def cluster(crds: None) -> Cluster:
    return connect(kubeconfig=str(KUBECONFIG), context=None)


@pytest.fixture
def run_id(cluster: Cluster) -> Iterator[str]:
    rid = _run_id()
    yield rid
    cleanup(cluster, run_id=rid, timeout=60)


def _sessions(run_id: str) -> list[dict]:
    out = kubectl(
        "get", "agenticsessions", "-A", "-l", f"{bodies.RUN_ID_LABEL}={run_id}", "-o", "json"
    )
    return json.loads(out)["items"]


@pytest.mark.cluster
def test_terminal_sessions_load_and_cleanup(cluster: Cluster, run_id: str) -> None:
    scenario = get("terminal-sessions").sized(namespaces=4, sessions_per_ns=25, batch_size=2)
    with load.Loader(cluster, run_id=run_id, concurrency=16, session_phase="Completed") as loader:
        results = [loader.run_batch(plan) for plan in scenario.plan()]
    assert [r.sessions for r in results] == [50, 50]
    assert sum(r.namespaces for r in results) == 4
    assert all(r.rate > 0 for r in results)

    namespaces = run_namespaces(cluster, run_id=run_id)
    assert len(namespaces) == 4
    for ns in namespaces:
        labels = ns["metadata"]["labels"]
        assert labels[MANAGED_LABEL] == "true"
        assert labels[bodies.PART_OF_LABEL] == "oom-reproducer"
        assert labels[bodies.RUN_ID_LABEL] == run_id

    sessions = _sessions(run_id)
    assert len(sessions) == 100
    assert {s["status"]["phase"] for s in sessions} == {"Completed"}
    assert all(s["metadata"]["labels"][bodies.RUN_ID_LABEL] == run_id for s in sessions)
    # Production sessions were ~25 MB for 4,319: about 5.8 KB of raw JSON each.
    raw = len(json.dumps(sessions[0], separators=(",", ":")))
    assert 5 * 1024 <= raw <= 7 * 1024, raw

    result = cleanup(cluster, run_id=run_id, timeout=120)
    assert result.ok, result.stuck
    assert sorted(result.deleted) == sorted(ns["metadata"]["name"] for ns in namespaces)
    assert run_namespaces(cluster, run_id=run_id) == []


@pytest.mark.cluster
def test_each_namespace_is_labelled_once_its_own_sessions_are_in(
    cluster: Cluster, run_id: str
) -> None:
    """The label comes after every one of the namespace's sessions reached its phase (the
    operator must never see a Pending one), and before the batch's last namespaces are
    loaded: the operator's work on the first namespaces overlaps the rest of the load.

    Order is read from resourceVersions, which on this cluster's single etcd are its
    revision numbers (a client may not compare them in general; a test of this cluster may).
    """
    scenario = get("terminal-sessions").sized(namespaces=8, sessions_per_ns=20, batch_size=8)
    with load.Loader(cluster, run_id=run_id, concurrency=16, session_phase="Completed") as loader:
        [result] = [loader.run_batch(plan) for plan in scenario.plan()]
    assert result.sessions == 160
    labelled = {
        ns["metadata"]["name"]: int(ns["metadata"]["resourceVersion"])
        for ns in run_namespaces(cluster, run_id=run_id)
    }
    assert len(labelled) == 8
    written: dict[str, list[int]] = {}
    for s in _sessions(run_id):
        assert s["status"]["phase"] == "Completed"
        written.setdefault(s["metadata"]["namespace"], []).append(
            int(s["metadata"]["resourceVersion"])
        )
    for ns, at in labelled.items():
        assert at > max(written[ns]), f"{ns} was labelled managed before its sessions were in"
    first = min(labelled.values())
    assert first < max(max(v) for v in written.values()), "every label waited for the batch"


@pytest.mark.cluster
def test_running_sessions_get_parked_runner_pods(cluster: Cluster, run_id: str) -> None:
    scenario = get("running-sessions").sized(namespaces=1, sessions_per_ns=5, batch_size=1)
    with load.Loader(cluster, run_id=run_id, concurrency=8, session_phase="Running") as loader:
        result = loader.run_batch(scenario.plan()[0])
        assert loader.churn() == 5
    assert result.sessions == 5 and result.objects == 1 + 5 + 5
    ns = bodies.namespace_name(run_id, 0)
    pods = json.loads(kubectl("-n", ns, "get", "pods", "-o", "json"))["items"]
    assert len(pods) == 5
    for pod in pods:
        assert pod["spec"]["schedulerName"] == bodies.PARKED_SCHEDULER
        assert pod["metadata"]["labels"]["app"] == "ambient-code-runner"
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "AgenticSession"
        assert pod["status"]["phase"] == "Pending"
        assert "nodeName" not in pod["spec"]
    sessions = _sessions(run_id)
    assert {s["status"]["phase"] for s in sessions} == {"Running"}
    # The churn round rewrote the Ready condition's message.
    assert all(
        "update 1" in next(c["message"] for c in s["status"]["conditions"] if c["type"] == "Ready")
        for s in sessions
    )


@pytest.mark.cluster
@pytest.mark.parametrize("status_write", ["put", "patch"])
def test_both_status_writes_give_the_same_session(
    cluster: Cluster, run_id: str, status_write: load.StatusWrite
) -> None:
    scenario = get("terminal-sessions").sized(namespaces=1, sessions_per_ns=3, batch_size=1)
    with load.Loader(
        cluster, run_id=run_id, concurrency=4, session_phase="Failed", status_write=status_write
    ) as loader:
        loader.run_batch(scenario.plan()[0])
    sessions = _sessions(run_id)
    assert len(sessions) == 3
    for s in sessions:
        assert s["status"]["phase"] == "Failed" and s["status"]["completionTime"]
        # The write went through the status subresource: the spec is the one created.
        assert s["spec"]["initialPrompt"].startswith("You are working in")
        assert s["metadata"]["generation"] == 1
        assert s["metadata"]["labels"][bodies.RUN_ID_LABEL] == run_id


@pytest.mark.cluster
def test_minimal_sessions_are_small_and_reach_their_phase(cluster: Cluster, run_id: str) -> None:
    scenario = get("upstream-minimal").sized(namespaces=1, sessions_per_ns=4, batch_size=1)
    with load.Loader(
        cluster,
        run_id=run_id,
        concurrency=4,
        session_phase=scenario.session_phase,
        session_shape=scenario.session_shape,
    ) as loader:
        loader.run_batch(scenario.plan()[0])
    sessions = _sessions(run_id)
    assert len(sessions) == 4
    for s in sessions:
        assert s["status"] == {"phase": "Completed"}
        assert set(s["spec"]) <= {"displayName", "initialPrompt", "timeout"}
        raw = len(json.dumps(s, separators=(",", ":")))
        assert raw < 1024, raw


@pytest.mark.cluster
def test_status_put_on_a_changed_session_falls_back_to_merge_patch(
    cluster: Cluster, run_id: str
) -> None:
    ns = bodies.namespace_name(run_id, 0)
    cluster.client.create(
        "/api/v1/namespaces", json.loads(bodies.namespace_body(ns, run_id=run_id, managed=False))
    )
    base = AGENTIC_SESSIONS.path(ns)
    _, created = cluster.client.send(
        "POST", base, body=bodies.session_body(namespace=ns, name="s", run_id=run_id, n=1)
    )
    # Someone else writes in between: the created object's resourceVersion is now stale.
    kubectl("-n", ns, "annotate", "agenticsession", "s", "touched=yes")
    with load.Loader(cluster, run_id=run_id, concurrency=1) as loader:
        loader._write_status(f"{base}/s/status", created, "Stopped", "production")
    (session,) = _sessions(run_id)
    assert session["status"]["phase"] == "Stopped"
    assert session["metadata"]["annotations"]["touched"] == "yes"


@pytest.mark.cluster
def test_cleanup_reports_stuck_namespaces_instead_of_hanging(cluster: Cluster, run_id: str) -> None:
    name = bodies.namespace_name(run_id, 0)
    cluster.client.create(
        "/api/v1/namespaces", json.loads(bodies.namespace_body(name, run_id=run_id, managed=False))
    )
    cluster.client.create(
        f"/api/v1/namespaces/{name}/configmaps",
        {"metadata": {"name": "held", "finalizers": ["triage.test/hold"]}},
    )
    t0 = time.monotonic()
    result = cleanup(cluster, run_id=run_id, timeout=5, poll=0.5)
    assert time.monotonic() - t0 < 30
    assert not result.ok
    assert name in result.stuck
    # The namespace finalizer at least; the controller adds the content conditions when
    # it gets to them.
    assert "kubernetes" in result.stuck[name] or any("hold" in h for h in result.stuck[name])
    # Release it so the namespace can go.
    cluster.client.patch(
        f"/api/v1/namespaces/{name}/configmaps/held", {"metadata": {"finalizers": None}}
    )
    assert cleanup(cluster, run_id=run_id, timeout=60).ok
