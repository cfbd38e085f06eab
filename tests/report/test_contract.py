"""The report reads what the orchestrator writes: a run built with triage.rundir.RunDir.

SYNTHETIC values, written through the orchestrator's own writer (the same code path as a
real run), so a change on either side of the run-directory contract breaks this test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from triage.cli import app
from triage.exitcodes import ExitCode
from triage.report import load_run, render_report, summarize
from triage.rundir import RunDir

pytestmark = pytest.mark.unit

MI = 1024 * 1024


def _orchestrator_style_run(path: Path, *, per_session: int = 20_000) -> Path:
    rd = RunDir(path, run_id=path.name)
    rd.update_meta(
        started_at="2024-05-01T12:00:00Z",
        finished_at=None,
        scenario="terminal-sessions",
        options={"mem_limit": "256Mi", "size": "ci", "kubeconfig": None, "set_env": {}},
        limit_bytes=256 * MI,
        versions={"triage": "0.1.0"},
        cluster={"context": "kind-triage", "server": "https://127.0.0.1:6443", "kind": "kind"},
        outcome={"status": "interrupted", "message": "the run did not finish"},
        restore={"status": "failed", "message": "not restored yet"},
    )
    row: dict[str, Any] = {"restart_count": 0, "oom_count": 0, "pod": "agentic-operator-abc"}
    rd.add_sample({**row, "kind": "baseline", "batch": 0, "t_seconds": 0.5,
                   "timestamp": "2024-05-01T12:00:00Z", "sessions": 0, "namespaces": 0,
                   "objects": 0, "working_set_bytes": 40 * MI, "rss_bytes": 38 * MI,
                   "oom_killed": False})  # fmt: skip
    for batch in range(1, 6):
        sessions = 200 * batch
        rd.add_sample({**row, "kind": "batch", "batch": batch, "t_seconds": 10.0 * batch,
                       "timestamp": "2024-05-01T12:01:00Z", "sessions": sessions,
                       "namespaces": 2 * batch, "objects": 3 * sessions,
                       "working_set_bytes": 40 * MI + per_session * sessions + 1000 * batch,
                       "rss_bytes": None, "metrics_api_bytes": None, "oom_killed": False,
                       "batch_seconds": 9.876, "create_rate": 20.3})  # fmt: skip
    rd.write_latency(
        [{"session": "s-1", "namespace": "ns-1", "created": "100.0", "pod_created": "100.2",
          "scheduled": "100.3", "running": "101.5", "ready": ""}]
    )  # fmt: skip
    rd.update_meta(
        finished_at="2024-05-01T12:05:00Z",
        outcome={"status": "completed", "message": "all 5 batches without an OOM"},
        restore={"status": "restored", "message": "ok"},
        cleanup={"status": "deleted", "deleted": 10},
        profile_notes=["batch 3: no memray capture in /profiles yet"],
    )
    rd.close()
    return path


def test_report_reads_the_orchestrators_writer(tmp_path: Path) -> None:
    run = _orchestrator_style_run(tmp_path / "20240501-120000-terminal-sessions-abcd")
    s = summarize(load_run(run))
    assert s.fit is not None and s.fit.slope == pytest.approx(20_000, rel=0.01)
    assert s.latency is not None and s.latency.total.values[50] == pytest.approx(1.5)
    html = render_report(s, out_dir=run).html.read_text()  # type: ignore[union-attr]
    assert "Survived 1,000 sessions" in html and "no memray capture" in html


def test_ci_runs_scenarios_through_the_orchestrator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`triage ci` without --from calls reproduce.run once per budgeted scenario."""
    from triage import reproduce

    calls: list[tuple[str, str, Path]] = []

    def fake_run(options: reproduce.ReproduceOptions, **_: object) -> Path:
        calls.append((options.scenario, options.size, options.reports_root))
        return _orchestrator_style_run(options.reports_root / f"20240501-120000-x-{len(calls)}")

    monkeypatch.setattr(reproduce, "run", fake_run)
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("schema: 1\nscenarios:\n  terminal-sessions:\n    bytes_per_session: 16Ki\n")
    out = tmp_path / "reports"
    args = ["ci", "--budgets", str(budgets), "--out", str(out), "--size", "small"]
    result = CliRunner().invoke(app, args)
    assert calls == [("terminal-sessions", "small", out)]
    assert result.exit_code == ExitCode.BUDGET_EXCEEDED, result.output
    assert "terminal-sessions: bytes per session" in result.output
    assert (out / "ci-summary.md").is_file()
