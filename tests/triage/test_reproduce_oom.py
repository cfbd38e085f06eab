"""End to end: `triage reproduce` drives the real operator pod to a real OOMKill.

The operator is deployed from deploy/local into a namespace of its own (fixture
`operator_namespace`), run with the unfixed full cache (AGENTIC_CACHE_MODE=full) under a
limit just above its idle footprint on this cluster, and loaded until the kernel kills it.
The idle footprint depends on what else the shared cluster holds (the full cache lists
every session of every namespace), so a first short run measures it: that run is also the
proof that --max-batches stops cleanly without an OOM.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KUBECONFIG, REPO, kubectl
from triage.load import RUN_ID_LABEL

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]

MI = 2**20
# Small enough that the run's own sessions (several KiB each in the full cache) fill it.
HEADROOM = 24 * MI


def _triage(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "200", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )


def _deployment(namespace: str) -> dict[str, Any]:
    return json.loads(
        kubectl("-n", namespace, "get", "deployment", "agentic-operator", "-o", "json")
    )


def _samples(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "samples.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _common(namespace: str) -> list[str]:
    return [
        "reproduce",
        "--kubeconfig", str(KUBECONFIG),
        "--operator-namespace", namespace,
        "--set-env", "AGENTIC_CACHE_MODE=full",
        "--profile", "memray",
        "--cleanup",
    ]  # fmt: skip


def test_reproduce_reaches_a_real_oom_records_it_and_restores(
    operator_namespace: str, tmp_path: Path
) -> None:
    ns = operator_namespace
    original = _deployment(ns)

    probe_dir = tmp_path / "probe"
    probe = _triage(
        *_common(ns),
        "--mem-limit", "2Gi",
        "--namespaces", "2", "--sessions-per-ns", "5", "--batch-size", "1",
        "--max-batches", "1", "--settle", "0",
        "--out", str(probe_dir),
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    probe_meta = json.loads((probe_dir / "run.json").read_text())
    assert probe_meta["outcome"]["status"] == "max-batches"
    assert probe_meta["restore"]["status"] == "restored"
    idle = max(int(r["working_set_bytes"] or 0) for r in _samples(probe_dir))
    assert idle > 0
    limit_mi = math.ceil((idle + HEADROOM) / MI)

    run_dir = tmp_path / "run"
    result = _triage(
        *_common(ns),
        "--mem-limit", f"{limit_mi}Mi",
        "--namespaces", "1000", "--sessions-per-ns", "10", "--batch-size", "50",
        "--max-batches", "20", "--settle", "2", "--settle-after-oom", "20",
        "--concurrency", "32",
        "--out", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["outcome"]["status"] == "oom", meta["outcome"]
    assert meta["limit_bytes"] == limit_mi * MI
    assert meta["restore"]["status"] == "restored"
    assert meta["cleanup"]["status"] == "deleted"
    oom_batch = meta["outcome"]["oom_batch"]
    assert meta["outcome"]["oom_sessions"] == oom_batch * 500

    rows = _samples(run_dir)
    assert rows[0]["kind"] == "baseline"
    killed = [r for r in rows if r["oom_killed"] == "1"]
    assert killed and killed[0]["kind"] == "batch" and int(killed[0]["batch"]) == oom_batch
    assert int(rows[-1]["oom_count"]) >= 1
    post = [r for r in rows if r["kind"] == "post-oom"]
    assert len(post) >= 5
    assert all(int(r["restart_count"]) >= 1 for r in post)
    # The restart is visible: the restarted container was measured, or (a crash loop, too
    # quick for the kubelet's stats) killed again with no new load, and the summary says so.
    killed_again = int(rows[-1]["oom_count"]) > int(killed[0]["oom_count"])
    assert any(r["working_set_bytes"] for r in post) or killed_again
    summary = json.loads((run_dir / "summary.json").read_text())
    if killed_again:
        assert summary["memory"]["crash_loop_likely"] is True
        assert summary["memory"]["ooms_after_restart"] >= 1

    # memray captures were copied out per batch, and the killed process's capture survived
    # the kill: it was read again after the OOM (the OOM batch has no pre-kill profile).
    raw = sorted((run_dir / "profiles" / "raw").glob("memray-*.bin"))
    assert raw
    batch_json = sorted((run_dir / "profiles").glob("batch-*/memray.json"))
    assert len(batch_json) >= 2
    first = json.loads(batch_json[0].read_text())
    assert first["heap_bytes"] > 0 and first["top"]
    at_oom = json.loads(
        (run_dir / "profiles" / f"batch-{oom_batch:04d}" / "memray.json").read_text()
    )
    last_before = json.loads(batch_json[-2].read_text())
    # The killed process kept allocating after the last profiled batch: its capture read
    # after the kill holds at least as much as the one read before it.
    assert at_oom["heap_bytes"] >= last_before["heap_bytes"] > 0

    # Exactly restored: spec equal field for field, user metadata equal.
    after = _deployment(ns)
    assert after["spec"] == original["spec"]
    assert after["metadata"].get("labels") == original["metadata"].get("labels")
    assert (run_dir / "journal.json").is_file()

    # --cleanup removed everything the run created.
    left = kubectl("get", "namespaces", "-l", f"{RUN_ID_LABEL}={meta['run_id']}", "-o", "name")
    assert left.strip() == ""


def test_sigterm_mid_run_restores_and_exits_130(operator_namespace: str, tmp_path: Path) -> None:
    import signal
    import time

    ns = operator_namespace
    original = _deployment(ns)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "triage.cli",
            "reproduce",
            "--kubeconfig",
            str(KUBECONFIG),
            "--operator-namespace",
            ns,
            "--mem-limit",
            "1Gi",
            "--profile",
            "py-spy",
            "--namespaces",
            "400",
            "--sessions-per-ns",
            "5",
            "--batch-size",
            "2",
            "--settle",
            "3",
            "--cleanup",
            "--out",
            str(run_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # fmt: on
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            samples = run_dir / "samples.csv"
            if samples.exists() and any(r["kind"] == "batch" for r in _samples(run_dir)):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        else:
            pytest.fail("the run never reached its first batch")
        # Mid-run: patched, loading, with a py-spy capability that must go away again.
        patched = _deployment(ns)
        container = patched["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["memory"] == "1Gi"
        assert "SYS_PTRACE" in json.dumps(container.get("securityContext", {}))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["outcome"]["status"] == "interrupted"
    assert meta["restore"]["status"] == "restored"
    assert meta["cleanup"]["status"] == "deleted"
    # py-spy dumped the operator's threads (the baseline profile is taken before any batch).
    assert "Thread" in (run_dir / "profiles" / "batch-0000" / "pyspy.txt").read_text()
    after = _deployment(ns)
    assert after["spec"] == original["spec"]
    left = kubectl("get", "namespaces", "-l", f"{RUN_ID_LABEL}={meta['run_id']}", "-o", "name")
    assert left.strip() == ""
