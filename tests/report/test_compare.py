"""`triage compare` flags a synthetic regression and stays quiet on noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.report.synthetic import Synthetic, write_run
from triage.exitcodes import ExitCode
from triage.report import compare_runs, render_compare, summarize
from triage.rundir import load_run

pytestmark = pytest.mark.unit

BASE = Synthetic(run_suffix="base", seed=1)
# The same build, different noise: must not be called a regression.
RERUN = Synthetic(run_suffix="rern", seed=7)
# SYNTHETIC regression: 40% more bytes per session.
WORSE = Synthetic(run_suffix="wrse", seed=2, bytes_per_session=BASE.bytes_per_session * 1.4)


def _pair(tmp_path: Path, new: Synthetic) -> tuple[Path, Path]:
    return write_run(tmp_path / "a", BASE), write_run(tmp_path / "b", new)


def test_regression_flagged(tmp_path: Path) -> None:
    base_dir, new_dir = _pair(tmp_path, WORSE)
    c = compare_runs(base=summarize(load_run(base_dir)), new=summarize(load_run(new_dir)))
    keys = {r.key for r in c.regressions}
    assert "bytes_per_session" in keys and "oom_point_sessions" in keys
    assert c.slope_ci_overlap is False
    bps = next(ch for ch in c.changes if ch.key == "bytes_per_session")
    assert bps.relative == pytest.approx(0.4, abs=0.05)

    written = render_compare(c, out_dir=tmp_path / "cmp")
    html = written.html.read_text()  # type: ignore[union-attr]
    assert "Regression: Bytes per session" in html
    assert html.count('<img class="figure"') == 3
    assert "🔴" in written.markdown.read_text()
    assert json.loads(written.json.read_text())["regression"] is True


def test_noise_is_not_a_regression(tmp_path: Path) -> None:
    base_dir, new_dir = _pair(tmp_path, RERUN)
    c = compare_runs(base=summarize(load_run(base_dir)), new=summarize(load_run(new_dir)))
    assert not c.regressions, [(r.key, r.relative, r.note) for r in c.regressions]


def test_compare_cli(tmp_path: Path) -> None:
    base_dir, new_dir = _pair(tmp_path, WORSE)
    out = tmp_path / "cmp"
    result = run_cli(["compare", str(base_dir), str(new_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "regression" in result.output
    assert {p.name for p in out.iterdir()} >= {"compare.html", "compare.md", "compare.json"}

    result = run_cli(
        ["compare", str(base_dir), str(new_dir), "--out", str(out), "--fail-on-regression"]
    )
    assert result.exit_code == ExitCode.BUDGET_EXCEEDED

    # Default output: next to the new run.
    result = run_cli(["compare", str(base_dir), str(base_dir)])
    assert result.exit_code == 0, result.output
    assert (
        base_dir.parent / f"compare-{base_dir.name}-vs-{base_dir.name}" / "compare.html"
    ).is_file()


def test_two_flat_runs_differ_only_in_noise(tmp_path: Path) -> None:
    # Lean operators: 30 and 120 B a session, each fit tight (little noise), so their 95%
    # CIs do not overlap, and their extrapolated OOM points are 4x apart. Both are under
    # the noise floor: neither the slope nor the OOM point is a regression.
    base, new = (
        summarize(load_run(write_run(tmp_path / suffix, Synthetic(
            run_suffix=suffix, bytes_per_session=slope, noise_bytes=500.0, max_batches=6,
            cache_per_session=0.0))))
        for suffix, slope in (("flt1", 30.0), ("flt2", 120.0))
    )  # fmt: skip
    assert base.flat and new.flat
    c = compare_runs(base=base, new=new)
    assert c.slope_ci_overlap is False
    assert not c.regressions, [(r.key, r.relative, r.note) for r in c.regressions]
    rows = {ch.key: ch for ch in c.changes}
    assert rows["bytes_per_session"].relative > 2
    assert "within noise: under the 150 B per session noise floor" in rows["bytes_per_session"].note
    assert rows["oom_point_sessions"].relative < -0.5
    assert "within noise: neither run grows per session" in rows["oom_point_sessions"].note
