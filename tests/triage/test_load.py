"""The bulk loader against the real apiserver: right objects, right labels, right phase, gone after cleanup."""

from __future__ import annotations

import csv
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KUBECONFIG, kubectl
from triage import load
from triage.kube import Cluster, connect
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
    load.cleanup(cluster, run_id=rid, timeout=60)


def _sessions(run_id: str) -> list[dict]:
    out = kubectl(
        "get", "agenticsessions", "-A", "-l", f"{load.RUN_ID_LABEL}={run_id}", "-o", "json"
    )
    return json.loads(out)["items"]


@pytest.mark.unit
def test_session_bodies_look_like_production() -> None:
    body = load.session_body(namespace="ns", name="s", run_id="r", n=7)
    status = load.status_body("Completed")
    assert 4 * 1024 <= len(body) + len(status) <= 6 * 1024
    doc = json.loads(body)
    assert {"repos", "initialPrompt", "llmSettings", "userContext", "environmentVariables"} <= set(
        doc["spec"]
    )
    st = json.loads(status)["status"]
    assert st["phase"] == "Completed" and st["completionTime"]
    assert {c["type"] for c in st["conditions"]} >= {"Ready", "PodCreated", "Reconciled"}


@pytest.mark.unit
def test_nearest_rank() -> None:
    assert load.nearest_rank([], 50) is None
    values = [float(v) for v in range(1, 11)]
    assert load.nearest_rank(values, 50) == 5
    assert load.nearest_rank(values, 90) == 9
    assert load.nearest_rank(values, 99) == 10
    assert load.nearest_rank([3.0], 99) == 3.0


@pytest.mark.unit
def test_latency_stages_never_go_backwards() -> None:
    row = load.LatencyRow(session="s", namespace="n", created=100.0)
    pod = {
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "containerStatuses": [{"state": {"running": {}}}],
        }
    }
    load.observe_pod(row, pod, seen_at=99.0)  # a clock a little behind
    assert row.pod_created == row.scheduled == row.running == row.ready == 100.0
    load.observe_pod(row, pod, seen_at=200.0)  # later looks change nothing
    assert row.ready == 100.0
    assert row.as_row()["ready"] == "100.000"


@pytest.mark.unit
def test_a_runner_that_never_starts_says_what_held_it(tmp_path: Path) -> None:
    from triage.report.analysis import summarize_latency
    from triage.report.rundir import _load_latency
    from triage.runformat import LATENCY_COLUMNS, LATENCY_REQUIRED

    msg = "0/1 nodes are available: 1 Insufficient cpu."
    pending = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": msg,
                }
            ]
        }
    }
    creating = {
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
        }
    }
    a = load.LatencyRow(session="a", namespace="n", created=1.0)
    b = load.LatencyRow(session="b", namespace="n", created=1.0)
    load.observe_pod(a, pending, seen_at=2.0)
    load.observe_pod(b, creating, seen_at=2.0)
    assert a.as_row()["waiting"] == f"Unschedulable: {msg}"
    assert b.as_row()["waiting"] == "ContainerCreating"
    running = {"status": {"containerStatuses": [{"state": {"running": {}}}]}}
    load.observe_pod(b, running, seen_at=3.0)
    assert b.as_row()["waiting"] == ""  # it started: nothing held it

    # Written with the column, read back and summarised; older files without it still load.
    path = tmp_path / "latency.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LATENCY_COLUMNS)
        w.writeheader()
        w.writerows([a.as_row(), b.as_row()])
    rows = list(_load_latency(path))
    assert summarize_latency(rows).not_started_reasons == ((f"Unschedulable: {msg}", 1),)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LATENCY_REQUIRED, extrasaction="ignore")
        w.writeheader()
        w.writerows([a.as_row(), b.as_row()])
    old = list(_load_latency(path))
    assert summarize_latency(old).not_started_reasons == (("no runner pod seen", 1),)


@pytest.mark.cluster
def test_terminal_sessions_load_and_cleanup(cluster: Cluster, run_id: str) -> None:
    scenario = get("terminal-sessions").sized(namespaces=4, sessions_per_ns=25, batch_size=2)
    with load.Loader(cluster, run_id=run_id, concurrency=16, session_phase="Completed") as loader:
        results = [loader.run_batch(plan) for plan in scenario.plan()]
    assert [r.sessions for r in results] == [50, 50]
    assert sum(r.namespaces for r in results) == 4
    assert all(r.rate > 0 for r in results)

    namespaces = load.run_namespaces(cluster, run_id=run_id)
    assert len(namespaces) == 4
    for ns in namespaces:
        labels = ns["metadata"]["labels"]
        assert labels[load.MANAGED_LABEL] == "true"
        assert labels[load.PART_OF_LABEL] == "oom-reproducer"
        assert labels[load.RUN_ID_LABEL] == run_id

    sessions = _sessions(run_id)
    assert len(sessions) == 100
    assert {s["status"]["phase"] for s in sessions} == {"Completed"}
    assert all(s["metadata"]["labels"][load.RUN_ID_LABEL] == run_id for s in sessions)
    # Production sessions were ~25 MB for 4,319: about 5.8 KB of raw JSON each.
    raw = len(json.dumps(sessions[0], separators=(",", ":")))
    assert 5 * 1024 <= raw <= 7 * 1024, raw

    result = load.cleanup(cluster, run_id=run_id, timeout=120)
    assert result.ok, result.stuck
    assert sorted(result.deleted) == sorted(ns["metadata"]["name"] for ns in namespaces)
    assert load.run_namespaces(cluster, run_id=run_id) == []


@pytest.mark.cluster
def test_running_sessions_get_parked_runner_pods(cluster: Cluster, run_id: str) -> None:
    scenario = get("running-sessions").sized(namespaces=1, sessions_per_ns=5, batch_size=1)
    with load.Loader(cluster, run_id=run_id, concurrency=8, session_phase="Running") as loader:
        result = loader.run_batch(scenario.plan()[0])
        assert loader.churn() == 5
    assert result.sessions == 5 and result.objects == 1 + 5 + 5
    ns = load.namespace_name(run_id, 0)
    pods = json.loads(kubectl("-n", ns, "get", "pods", "-o", "json"))["items"]
    assert len(pods) == 5
    for pod in pods:
        assert pod["spec"]["schedulerName"] == load.PARKED_SCHEDULER
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
        assert s["metadata"]["labels"][load.RUN_ID_LABEL] == run_id


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
        assert set(s["spec"]) <= {"displayName", "initialPrompt", "timeout", "interactive"}
        raw = len(json.dumps(s, separators=(",", ":")))
        assert raw < 1024, raw


@pytest.mark.cluster
def test_status_put_on_a_changed_session_falls_back_to_merge_patch(
    cluster: Cluster, run_id: str
) -> None:
    ns = load.namespace_name(run_id, 0)
    cluster.json(
        "POST",
        "/api/v1/namespaces",
        body=json.loads(load.namespace_body(ns, run_id=run_id, managed=False)),
    )
    base = f"/apis/{load.GROUP_VERSION}/namespaces/{ns}/agenticsessions"
    _, created = cluster.raw(
        "POST", base, body=load.session_body(namespace=ns, name="s", run_id=run_id, n=1)
    )
    # Someone else writes in between: the created object's resourceVersion is now stale.
    kubectl("-n", ns, "annotate", "agenticsession", "s", "touched=yes")
    with load.Loader(cluster, run_id=run_id, concurrency=1) as loader:
        loader._write_status(f"{base}/s/status", created, "Stopped")
    (session,) = _sessions(run_id)
    assert session["status"]["phase"] == "Stopped"
    assert session["metadata"]["annotations"]["touched"] == "yes"


@pytest.mark.cluster
def test_cleanup_reports_stuck_namespaces_instead_of_hanging(cluster: Cluster, run_id: str) -> None:
    name = load.namespace_name(run_id, 0)
    cluster.json(
        "POST",
        "/api/v1/namespaces",
        body=json.loads(load.namespace_body(name, run_id=run_id, managed=False)),
    )
    cluster.json(
        "POST",
        f"/api/v1/namespaces/{name}/configmaps",
        body={"metadata": {"name": "held", "finalizers": ["triage.test/hold"]}},
    )
    t0 = time.monotonic()
    result = load.cleanup(cluster, run_id=run_id, timeout=5, poll=0.5)
    assert time.monotonic() - t0 < 30
    assert not result.ok
    assert name in result.stuck
    # The namespace finalizer at least; the controller adds the content conditions when
    # it gets to them.
    assert "kubernetes" in result.stuck[name] or any("hold" in h for h in result.stuck[name])
    # Release it so the namespace can go.
    cluster.json(
        "PATCH",
        f"/api/v1/namespaces/{name}/configmaps/held",
        body={"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert load.cleanup(cluster, run_id=run_id, timeout=60).ok
