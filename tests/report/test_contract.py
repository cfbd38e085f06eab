"""The report reads what the orchestrator writes, and `triage ci` drives the orchestrator.

The synthetic runs go through `triage.rundir.RunWriter`, the writer reproduce uses: a change
on either side of the run-directory format breaks these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.report.synthetic import Synthetic, write_run
from triage.exitcodes import ExitCode
from triage.report import render_report, summarize
from triage.rundir import load_run

pytestmark = pytest.mark.unit

SURVIVOR = Synthetic(limit_mi=256, max_batches=5, batch_size=200, bytes_per_session=20_000,
                     memray=False, pyspy=False, latency_sessions=10, run_suffix="abcd")  # fmt: skip


def test_report_reads_the_orchestrators_writer(tmp_path: Path) -> None:
    run = write_run(tmp_path, SURVIVOR)
    s = summarize(load_run(run))
    assert s.measure is not None and s.measure.column == "unreclaimable_bytes"
    assert s.fit is not None and s.fit.slope == pytest.approx(20_000, rel=0.05)
    assert s.latency is not None and s.latency.sessions == 10
    html = render_report(s, out_dir=run).html.read_text()  # type: ignore[union-attr]
    assert "Survived 1,000 sessions" in html and "unreclaimable memory" in html


def test_ci_runs_scenarios_through_the_orchestrator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`triage ci` without --from calls reproduce.run once per budgeted scenario."""
    from triage import reproduce

    calls: list[tuple[str, str, Path]] = []

    def fake_run(options: reproduce.ReproduceOptions, **_: object) -> Path:
        calls.append((options.scenario, options.size, options.reports_root))
        return write_run(options.reports_root, SURVIVOR)

    monkeypatch.setattr(reproduce, "run", fake_run)
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("schema: 1\nscenarios:\n  terminal-sessions:\n    bytes_per_session: 16Ki\n")
    out = tmp_path / "reports"
    args = ["ci", "--budgets", str(budgets), "--out", str(out), "--size", "small"]
    result = run_cli(args)
    assert calls == [("terminal-sessions", "small", out)]
    assert result.exit_code == ExitCode.BUDGET_EXCEEDED, result.output
    assert "terminal-sessions: bytes per session" in result.output
    assert (out / "ci-summary.md").is_file()
