"""triage.latency: stages of a runner's start-up, never reordered, and what held the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.latency import observe_pod
from triage.report.latency import summarize_latency
from triage.rundir import LatencyRow, RunWriter
from triage.rundir.format import LATENCY_COLUMNS, V1_LATENCY_COLUMNS
from triage.rundir.reader import _records

pytestmark = pytest.mark.unit


def test_latency_stages_never_go_backwards() -> None:
    row = LatencyRow(session="s", namespace="n", created=100.0)
    pod = {
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "containerStatuses": [{"state": {"running": {}}}],
        }
    }
    row = observe_pod(row, pod, seen_at=99.0)  # a clock a little behind
    assert row.pod_created == row.scheduled == row.running == row.ready == 100.0
    row = observe_pod(row, pod, seen_at=200.0)  # later looks change nothing
    assert row.ready == 100.0


def test_a_runner_that_never_starts_says_what_held_it(tmp_path: Path) -> None:
    msg = "0/1 nodes are available: 1 Insufficient cpu."
    pending = {"status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]}}  # fmt: skip
    creating = {"status": {
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}  # fmt: skip
    a = observe_pod(LatencyRow(session="a", namespace="n", created=1.0), pending, seen_at=2.0)
    b = observe_pod(LatencyRow(session="b", namespace="n", created=1.0), creating, seen_at=2.0)
    assert a.waiting == f"Unschedulable: {msg}"
    assert b.waiting == "ContainerCreating"
    running = {"status": {"containerStatuses": [{"state": {"running": {}}}]}}
    b = observe_pod(b, running, seen_at=3.0)
    assert b.waiting == ""  # it started: nothing held it

    # Written, read back and summarised; older files without the column still load.
    w = RunWriter(tmp_path, run_id="r")
    path = w.write_latency([a, b])
    rows = list(_records(path, LatencyRow, required=V1_LATENCY_COLUMNS, known=LATENCY_COLUMNS))
    assert summarize_latency(rows).not_started_reasons == ((f"Unschedulable: {msg}", 1),)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")
    old = list(_records(path, LatencyRow, required=V1_LATENCY_COLUMNS, known=LATENCY_COLUMNS))
    assert summarize_latency(old).not_started_reasons == (("no runner pod seen", 1),)
