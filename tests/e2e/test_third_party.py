"""Operators this project did not write, to a real OOM kill, each with its profiler.

- a kopf operator with memray in its image: memray blames kopf's own internals;
- an operator on the official client without memray or py-spy in its image: memray is
  refused before any change (exit 3), py-spy comes as a sidecar and is taken away again;
- a Go operator on client-go: pprof through a port-forward to its loopback, heap profiles
  that `go tool pprof` reads, parsed without Go.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import kubectl
from tests.e2e.conftest import Scope, deployment, run_meta, run_triage
from tests.operators.deploy import Deployed, deploy, undeploy

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]

GO = Path("/usr/lib/go-1.19/bin/go")


@contextlib.contextmanager
def _deployed(name: str, namespace: str, **scope: str) -> Iterator[Deployed]:
    op = deploy(name, namespace, **scope)
    try:
        yield op
    finally:
        undeploy(op)


@pytest.fixture
def kopf_op(namespace: str, scope: Scope) -> Iterator[Deployed]:
    # kopf scopes by namespace name globs only: the run's namespaces carry a prefix of this
    # test's own, so namespaces other tests leave terminating are not kopf's to list.
    with _deployed("kopf-sessions", namespace, globs=f"{scope.prefix}-*") as op:
        yield op


@pytest.fixture
def client_op(namespace: str, scope: Scope) -> Iterator[Deployed]:
    with _deployed("client-sessions", namespace, selector=scope.selector) as op:
        yield op


@pytest.fixture
def go_op(namespace: str, scope: Scope) -> Iterator[Deployed]:
    with _deployed("go-informer", namespace, selector=scope.selector) as op:
        yield op


def _untouched(op: Deployed, before: dict, *, ran: bool = True) -> None:
    """The Deployment is as it was (and, for a run refused up front, never written)."""
    after = deployment(op.namespace, op.name)
    assert after["spec"] == before["spec"]
    if not ran:
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
    left = kubectl("-n", op.namespace, "get", "configmaps,leases", "-l",
                   "app.kubernetes.io/managed-by=triage", "-o", "name")  # fmt: skip
    assert left.strip() == ""


def _oom_run(op: Deployed, scope: Scope, tmp_path: Path, kubeconfig: Path, *args: str,
             limit: str, namespaces: int, sessions: int, batch: int) -> Path:  # fmt: skip
    """A run against `op` sized to reach the OOM kill; returns its run directory."""
    run_dir = tmp_path / "run"
    scenario = scope.scenario(tmp_path / "s.yaml", namespaces=namespaces,
                              sessions_per_ns=sessions, batch_size=batch)  # fmt: skip
    result = run_triage(
        "reproduce", "--operator-namespace", op.namespace, "--operator-deployment", op.name,
        "--mem-limit", limit, "--scenario", str(scenario), "--settle-after-oom", "5",
        "--cleanup", "--cleanup-wait", "--out", str(run_dir), *args, kubeconfig=kubeconfig,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    meta = run_meta(run_dir)
    assert meta["outcome"]["status"] == "oom", meta["outcome"]
    return run_dir


def test_kopf_operator_memray_blames_kopf(
    kopf_op: Deployed, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    before = deployment(kopf_op.namespace, kopf_op.name)
    run_dir = _oom_run(kopf_op, scope, tmp_path, triage_kubeconfig, "--profile", "memray",
                       limit="80Mi", namespaces=60, sessions=50, batch=4)  # fmt: skip
    meta = run_meta(run_dir)
    assert meta["target"]["command_source"] == "deployment"  # `kopf run ...`
    # kopf's captures grow ~100x faster than ours (~290 KB a session): no sizeLimit to be
    # evicted by, every batch's capture bytes measured, none of the pods evicted.
    sizes = meta["profiler"]["settings"]["capture_bytes_by_batch"]
    assert len(sizes) >= 2 and sizes[-1][1] > sizes[0][1] > 0, sizes
    events = (run_dir / "events.jsonl").read_text()
    assert "Evicted" not in events
    summary = json.loads((run_dir / "summary.json").read_text())
    growth = summary["heap"]["growth"]
    assert growth, summary["heap"]
    # The top growth is kopf's code (or what kopf called), with the path that led there.
    blamed = [f["file"] for g in growth[:3] for f in [g, *g["stack"]]]
    assert any("/kopf/" in f for f in blamed), blamed
    assert summary["why"] and " via " in summary["why"]
    _untouched(kopf_op, before)


def test_client_operator_without_memray_is_refused_before_any_change(
    client_op: Deployed, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    before = deployment(client_op.namespace, client_op.name)
    result = run_triage(
        "reproduce", "--operator-namespace", client_op.namespace,
        "--operator-deployment", client_op.name, "--profile", "memray",
        "--scenario", str(scope.scenario(tmp_path / "s.yaml")), "--out", str(tmp_path / "run"),
        kubeconfig=triage_kubeconfig,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot import memray" in lines[0], lines
    assert f"container {client_op.name!r}" in lines[0] and "--profile py-spy" in lines[0]
    _untouched(client_op, before, ran=False)
    assert not (tmp_path / "run" / "journal.json").exists()


def test_client_operator_py_spy_sidecar_comes_and_goes(
    client_op: Deployed, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    before = deployment(client_op.namespace, client_op.name)
    run_dir = _oom_run(client_op, scope, tmp_path, triage_kubeconfig,
                       "--profile", "py-spy", "--no-cold-start",
                       limit="128Mi", namespaces=60, sessions=60, batch=6)  # fmt: skip
    dumps = sorted((run_dir / "profiles").glob("batch-*/pyspy.txt"))
    assert len(dumps) >= 2 and "Thread" in dumps[-1].read_text()
    html = (run_dir / "report.html").read_text()
    assert "py-spy shows where the operator's threads are, not what holds memory" in html
    _untouched(client_op, before)  # the sidecar, shareProcessNamespace, SYS_PTRACE: gone


def test_go_operator_pprof_names_its_cache(
    go_op: Deployed, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    before = deployment(go_op.namespace, go_op.name)
    run_dir = _oom_run(go_op, scope, tmp_path, triage_kubeconfig, "--profile", "pprof",
                       "--pprof-port", str(go_op.ports["pprof"]), "--no-cold-start",
                       limit="64Mi", namespaces=60, sessions=100, batch=6)  # fmt: skip
    raw = sorted((run_dir / "profiles" / "raw").glob("heap-batch-*.pb.gz"))
    assert len(raw) >= 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["heap"]["profiler"] == "pprof"
    blamed = " ".join(f["function"] for g in summary["heap"]["growth"][:3] for f in g["stack"])
    assert "dynamicinformer" in blamed or "cache" in blamed or "json" in blamed, blamed
    # The image has no shell: memory.stat could not be read, and the report says so.
    assert summary["measure"]["column"] in ("rss_bytes", "unreclaimable_bytes")
    if GO.exists():  # `go tool pprof -base` reads what triage saved
        out = subprocess.run([str(GO), "tool", "pprof", "-top", "-base", str(raw[0]), str(raw[-1])],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert out.returncode == 0 and "flat" in out.stdout, out.stderr
    _untouched(go_op, before)
