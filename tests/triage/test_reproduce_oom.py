"""End to end: SIGTERM in the middle of a real run restores and cleans up.

The OOM path itself (two kills, captures, exact restore) is tests/e2e/test_ours.py; this is
the signal a CI runner or `kill` sends, as opposed to the Ctrl-C of tests/e2e/test_faults.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KUBECONFIG, REPO, kubectl
from triage.bodies import RUN_ID_LABEL

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
            "--settle-max",
            "3",
            "--no-cold-start",
            "--cleanup",
            "--cleanup-wait",
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
        # Mid-run: patched, loading, with a py-spy sidecar that must go away again.
        patched = _deployment(ns)
        pod = patched["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"]["memory"] == "1Gi"
        assert pod.get("shareProcessNamespace") is True
        assert "SYS_PTRACE" in json.dumps([c.get("securityContext") for c in pod["containers"]])
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
