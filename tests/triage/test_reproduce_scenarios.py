"""End to end: the scenarios the gate does not run, through `triage reproduce`, on the node.

The gate (`triage ci`) runs terminal-sessions, running-sessions, noise-pods and burst. These
run the other three against the real operator pod at a small size and check what each one is
for on the cluster itself, not only that the command exited 0: the managed-namespace cascade
really happened, churned conditions stayed one per type, the production mix has its runner
pods and its ProjectSettings in the right proportions. Every run must restore the Deployment.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KUBECONFIG, REPO, kubectl, wait_until
from triage.bodies import RUN_ID_LABEL
from triage.cleanup import cleanup
from triage.cluster import Cluster, connect
from triage.scenario import get

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]

GV = "vteam.ambient-code/v1alpha1"


@pytest.fixture
def cluster(crds: None) -> Cluster:
    return connect(kubeconfig=str(KUBECONFIG), context=None)


Reproduce = Callable[..., tuple[dict[str, Any], list[dict[str, str]]]]


@pytest.fixture
def reproduce(operator_namespace: str, tmp_path: Path, cluster: Cluster) -> Iterator[Reproduce]:
    """`_reproduce` against the test's operator; its runs are cleaned up after the test,
    whatever it asserted."""
    ids: list[str] = []

    def run(scenario: str, *extra: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
        meta, rows = _reproduce(operator_namespace, tmp_path / "run", scenario, *extra)
        ids.append(meta["run_id"])
        return meta, rows

    yield run
    for rid in ids:
        cleanup(cluster, run_id=rid, timeout=120)


def _reproduce(
    operator_ns: str, run_dir: Path, scenario: str, *extra: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    result = subprocess.run(
        [
            sys.executable, "-m", "triage.cli", "reproduce",
            "--kubeconfig", str(KUBECONFIG),
            "--operator-namespace", operator_ns,
            "--scenario", scenario,
            "--mem-limit", "512Mi",
            "--profile", "none",
            "--settle-max", "2",
            "--no-cold-start",
            "--keep",
            "--out", str(run_dir),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "200", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["scenario"] == scenario
    assert meta["outcome"]["status"] in ("completed", "max-batches"), meta["outcome"]
    assert meta["restore"]["status"] == "restored"
    with (run_dir / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    batches = [r for r in rows if r["kind"] == "batch"]
    assert batches and all(r["working_set_bytes"] for r in batches)
    assert all(r["oom_killed"] == "0" for r in rows)
    return meta, rows


def _run_namespaces(run_id: str) -> list[str]:
    out = kubectl("get", "namespaces", "-l", f"{RUN_ID_LABEL}={run_id}", "-o", "name")
    return sorted(line.split("/", 1)[1] for line in out.split())


def _items(path: str) -> list[dict[str, Any]]:
    return list(json.loads(kubectl("get", "--raw", path)).get("items", []))


def test_managed_namespaces_get_the_whole_cascade(reproduce: Reproduce) -> None:
    meta, _ = reproduce("managed-namespaces", "--namespaces", "6", "--batch-size", "3")
    namespaces = _run_namespaces(meta["run_id"])
    assert len(namespaces) == 6

    def cascaded(ns: str) -> bool:
        ps = _items(f"/apis/{GV}/namespaces/{ns}/projectsettings")
        sa = _items(f"/api/v1/namespaces/{ns}/serviceaccounts")
        lr = _items(f"/api/v1/namespaces/{ns}/limitranges")
        return (
            len(ps) == 1
            and (ps[0].get("status") or {}).get("limitRangeReady") is True
            and any(s["metadata"]["name"] == "ambient-session-trigger" for s in sa)
            and any(x["metadata"]["name"] == "ambient-default-limits" for x in lr)
        )

    for ns in namespaces:
        wait_until(lambda ns=ns: cascaded(ns), timeout=60, what=f"the cascade in {ns}")


def test_condition_churn_keeps_one_condition_per_type(reproduce: Reproduce) -> None:
    scenario = get("condition-churn").sized(namespaces=4, sessions_per_ns=5, batch_size=4)
    meta, _ = reproduce("condition-churn",
                        "--namespaces", "4", "--sessions-per-ns", "5", "--batch-size", "4")  # fmt: skip
    sessions = [
        s
        for ns in _run_namespaces(meta["run_id"])
        for s in _items(f"/apis/{GV}/namespaces/{ns}/agenticsessions")
    ]
    assert len(sessions) == 20
    for s in sessions:
        status = s["status"]
        types = [c["type"] for c in status["conditions"]]
        assert len(types) == len(set(types)), (s["metadata"]["name"], types)
        assert status["phase"] == "Running"
        # The last churn round's write is the one that stuck.
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert f"(update {scenario.churn_rounds})" in ready["message"]


def test_production_mix_keeps_the_upstream_proportions(reproduce: Reproduce) -> None:
    want = get("production-mix").sized(namespaces=38, batch_size=19).totals()
    meta, rows = reproduce("production-mix", "--namespaces", "38", "--batch-size", "19")
    namespaces = _run_namespaces(meta["run_id"])
    assert len(namespaces) == want["namespaces"]
    sessions = runners = pods = settings = 0
    for ns in namespaces:
        sessions += len(_items(f"/apis/{GV}/namespaces/{ns}/agenticsessions"))
        ns_pods = _items(f"/api/v1/namespaces/{ns}/pods")
        pods += len(ns_pods)
        runners += sum(
            (p["metadata"].get("labels") or {}).get("app") == "ambient-code-runner" for p in ns_pods
        )
        settings += len(_items(f"/apis/{GV}/namespaces/{ns}/projectsettings"))
    assert sessions == want["sessions"]
    assert pods == want["pods"]
    assert 0 < runners < pods  # runners among ordinary pods, as in production
    # The operator made one ProjectSettings per managed namespace, and none elsewhere.
    assert settings == want["managed_namespaces"] < want["namespaces"]
    assert int(rows[-1]["sessions"]) == want["sessions"]
