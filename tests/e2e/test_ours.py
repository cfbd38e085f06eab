"""Our operator (the unfixed full cache) driven to real OOM kills, profiled from outside.

memray goes in through triage's launcher, not the operator's own hook: the same path any
Python operator takes. The run must follow two kills in one run (a crash loop: the restarted
operator re-lists into the limit), keep each killed process's capture, say why with a stack,
and put the Deployment back exactly. A second test runs the same load with and without
memray and holds the profiler to its promise: the fitted bytes per session agree.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kubectl
from tests.e2e.conftest import Scope, deployment, run_events, run_meta, run_triage

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]


def _reproduce(
    ns: str, scope: Scope, out: Path, kubeconfig: Path, *extra: str, size: dict[str, int]
) -> dict[str, Any]:
    """A run of `size` (namespaces, sessions_per_ns, batch_size) on the full cache, to its
    verdict, that must put the Deployment back field for field; its run.json."""
    original = deployment(ns, "agentic-operator")
    scenario = scope.scenario(out.with_suffix(".yaml"), **size)
    result = run_triage(
        "reproduce", "--operator-namespace", ns, "--scenario", str(scenario),
        "--set-env", "AGENTIC_CACHE_MODE=full", "--cleanup", "--cleanup-wait",
        "--out", str(out), *extra, kubeconfig=kubeconfig,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert deployment(ns, "agentic-operator")["spec"] == original["spec"]
    return run_meta(out)


def test_memray_follows_two_oom_kills_and_restores_exactly(
    ours: str, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    run_dir = tmp_path / "run"
    # Big batches on purpose: the batch that kills completes, so the restarted operator
    # re-lists past what killed the first one and dies again. A fresh process holds a
    # session in less than the one that grew into it (measured with memray: about 23 against
    # 32 KiB), so the re-list of two batches only dies if the first kill came early in the
    # second batch. The two margins pull against each other: the first batch must fit under
    # the limit (base + B x 32 KiB) and two batches re-listed must not (base + 2B x 23 KiB);
    # together they are B x 14 KiB, whatever the base. The full cache holds every session
    # and pod in the cluster, so the other half of the suite moves the base (15 to 37 MiB
    # seen). Batches of 2,000 left 29 MiB for both: alone on the cluster the restart
    # peaked at 110 of 112Mi, and beside the suite it once held steady under it. Batches of
    # 3,000 leave 41 MiB; 140Mi puts the first batch (about 115 MiB on a 21 MiB base) and
    # the re-list (about 160) some 20 MiB either side of the limit.
    meta = _reproduce(ours, scope, run_dir, triage_kubeconfig, "--mem-limit", "140Mi",
                      "--profile", "memray", "--settle-after-oom", "30",
                      size={"namespaces": 60, "sessions_per_ns": 150, "batch_size": 20})  # fmt: skip
    assert meta["outcome"]["status"] == "oom", meta["outcome"]
    assert meta["target"]["command_source"] == "proc"  # the Deployment gives no command
    assert meta["profiler"]["kind"] == "memray"
    # memray's fixed cost is idle-with minus idle-without, a few MiB. The full cache holds every
    # object in the cluster, so beside the other half of the suite the two idle readings can
    # differ by more than that: then the run must say it could not measure it, never zero.
    # (The neutrality test, alone on the cluster, holds the figure itself.)
    cost, notes = meta["profiler"]["fixed_cost_bytes"], meta["profiler"]["notes"]
    assert (cost is not None and cost > 0) or any(
        "fixed cost could not be measured: the operator at idle used" in n for n in notes
    ), meta["profiler"]
    # Two kills in one run: the restarted operator re-listed its way into the limit again,
    # and each killed process left its own capture (one file per container start).
    summary = json.loads((run_dir / "summary.json").read_text())
    restarts = [e["message"] for e in run_events(run_dir) if e["kind"] == "container-restarted"]
    assert summary["restarts"]["cumulative_ooms"] >= 2, (summary["restarts"], restarts)
    assert len(restarts) >= 2 and all("OOMKilled" in m for m in restarts), restarts
    captures = sorted((run_dir / "profiles" / "raw").glob("memray-*.bin"))
    assert len(captures) >= 2, captures
    # A heap per batch, the one at the kill from the killed process's capture, with stacks.
    oom_batch = meta["outcome"]["oom_batch"]
    at_kill = json.loads(
        (run_dir / "profiles" / f"batch-{oom_batch:04d}" / "memray.json").read_text()
    )
    before = json.loads(
        (run_dir / "profiles" / f"batch-{oom_batch - 1:04d}" / "memray.json").read_text()
    )
    assert at_kill["heap_bytes"] > before["heap_bytes"] > 0
    assert at_kill["source"] != captures[-1].name
    assert at_kill["python_allocators"] is True
    assert any(len(site["stack"]) >= 2 for site in at_kill["top"])
    # The why names the operator's own code, per session, with the path to it.
    assert summary["why"] and "per session" in summary["why"] and " via " in summary["why"]
    assert summary["measure"]["column"] == "unreclaimable_bytes"
    # Put back field for field (checked in _reproduce); nothing triage made is left.
    assert kubectl("-n", ours, "get", "configmaps,leases", "-l",
                   "app.kubernetes.io/managed-by=triage", "-o", "name").strip() == ""  # fmt: skip
    assert meta["cleanup"]["status"] == "deleted"
    assert (run_dir / "report.html").is_file()


def test_memray_heaps_on_both_sides_of_a_restart_mid_run(
    ours: str, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    """`--restart-at 1`: the captures are copied out before the cold start and the load goes
    on, so the batch marks only end with the run. Every batch gets its heap, the ones after
    the restart from the restarted process's own capture."""
    run_dir = tmp_path / "run"
    meta = _reproduce(ours, scope, run_dir, triage_kubeconfig, "--mem-limit", "256Mi",
                      "--profile", "memray", "--restart-at", "1",
                      size={"namespaces": 6, "sessions_per_ns": 50, "batch_size": 2})  # fmt: skip
    assert meta["outcome"]["status"] == "completed", meta["outcome"]
    with (run_dir / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["batch"] for r in rows if r["kind"] == "cold-start"} == {"1"}
    # Ready is timed from the new container's start; the restart's own time is beside it.
    (cold,) = [e for e in run_events(run_dir) if e["kind"] == "cold-start"]
    ready, restart = cold["data"]["ready_seconds"], cold["data"]["restart_seconds"]
    assert 0 < ready <= restart, cold
    # Restarted in place (SIGTERM to PID 1, under memray too), as an OOM restarts it: the
    # pod stays, and its restart is marked as triage's own, not counted against it.
    assert cold["data"]["how"] == ["in-place"] and not cold["data"]["fallback"], cold
    (ours_restart,) = [e for e in run_events(run_dir) if e["kind"] == "container-restarted"]
    assert ours_restart["data"]["expected"], ours_restart
    assert "restarted by triage for the cold start" in ours_restart["message"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["restarts"] == {"restarts": 0, "cumulative_ooms": 0, "by_triage": 1}
    restarted_after = next(float(r["t_seconds"]) for r in rows if r["kind"] == "batch")
    assert restarted_after < cold["data"]["started_t_seconds"] <= cold["t_seconds"], cold
    assert f"ready {ready:.1f}s after its container started" in cold["message"]
    # Where the time after the load went: the restore says when it began, the reads when
    # they were done (bench/time_to_verdict.py's phases come from these).
    (restored,) = [e for e in run_events(run_dir) if e["kind"] == "restore"]
    (read,) = [e for e in run_events(run_dir) if e["kind"] == "profiles-read"]
    began = restored["data"]["began_t_seconds"]
    assert cold["t_seconds"] <= began < restored["t_seconds"] <= read["t_seconds"], (restored, read)
    assert [r["batch"] for r in rows if r["kind"] == "batch"] == ["1", "2", "3"]
    captures = sorted(p.name for p in (run_dir / "profiles" / "raw").glob("memray-*.bin"))
    assert len(captures) >= 2, captures
    heaps = {
        b: json.loads((run_dir / "profiles" / f"batch-{b:04d}" / "memray.json").read_text())
        for b in (1, 2, 3)
    }
    assert all(h["heap_bytes"] > 0 for h in heaps.values()), heaps
    assert heaps[1]["source"] == captures[0]
    assert heaps[3]["source"] != captures[0]
    assert not [n for n in meta["profiler"]["notes"] if "no memray heap" in n], meta["profiler"]


# Alone: the full cache holds every session in the cluster, so the other half's sessions
# coming and going would move the very slopes this compares.
@pytest.mark.alone
def test_profiling_leaves_the_figure_alone(
    ours: str, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    """The same load with --profile none and --profile memray: the fitted bytes per session
    agree within 10% or 150 B, and so do the OOM points once memray's fixed cost is taken
    out. Fitted on unreclaimable memory: memray's capture file sits in the page cache."""
    fits: dict[str, dict] = {}
    for profile in ("none", "memray"):
        run_dir = tmp_path / profile
        _reproduce(ours, scope, run_dir, triage_kubeconfig, "--mem-limit", "96Mi",
                   "--profile", profile, "--settle-after-oom", "5", "--no-cold-start",
                   size={"namespaces": 40, "sessions_per_ns": 50, "batch_size": 3})  # fmt: skip
        fits[profile] = json.loads((run_dir / "summary.json").read_text())
    none, memray = fits["none"], fits["memray"]
    a, b = none["fit"]["bytes_per_session"], memray["fit"]["bytes_per_session"]
    assert abs(a - b) <= max(0.10 * a, 150), (a, b)
    # With memray the working set also holds the capture file: the headline must not.
    assert memray["gap"]["cache_bytes"] > none["gap"]["cache_bytes"]
    pa = none["outcome"]["oom_sessions"] or none["predicted_oom_sessions"]
    pb = memray["outcome"]["oom_sessions_without_profiler"] or memray["predicted_oom_sessions"]
    assert abs(pa - pb) <= 0.10 * pa, (pa, pb)
    # memray's fixed cost is read on a fresh pod without memray: the pod the unprofiled run
    # left behind re-listed its 2,000 sessions and is larger than a fresh start.
    cost = run_meta(tmp_path / "memray")["profiler"]
    assert cost["fixed_cost_bytes"] is not None and 0 < cost["fixed_cost_bytes"] < 24 * 2**20
