"""The numbers: OLS and its interval, nearest-rank percentiles, limits, memray diffs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from tests.report.conftest import SYNTHETIC
from tests.report.synthetic import MI, Synthetic, write_run
from triage.report.analysis import (
    UPSTREAM_SESSIONS,
    fit_ols,
    nearest_rank,
    recommend_limit,
    summarize,
    summarize_memray,
)
from triage.report.rundir import AllocationSite, MemrayBatch, load_run
from triage.report.units import ceil_mi, human_bytes, parse_bytes

pytestmark = pytest.mark.unit


def test_fit_matches_scipy_linregress_and_t_interval() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(1, 11) * 500.0
    y = 40 * MI + 25_000 * x + rng.normal(0, 200_000, size=x.size)
    fit = fit_ols(list(x), list(y))
    assert fit is not None
    ref = stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope)
    assert fit.intercept == pytest.approx(ref.intercept)
    assert fit.r2 == pytest.approx(ref.rvalue**2)
    half = stats.t.ppf(0.975, x.size - 2) * ref.stderr
    assert fit.slope_ci == pytest.approx((ref.slope - half, ref.slope + half))


def test_fit_degenerate_inputs() -> None:
    assert fit_ols([], []) is None
    assert fit_ols([1.0], [2.0]) is None
    assert fit_ols([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None  # x does not vary
    two = fit_ols([0.0, 10.0], [0.0, 20.0])
    assert two is not None and two.slope == pytest.approx(2.0) and two.slope_ci is None


def test_nearest_rank_known_values() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert nearest_rank(values, 30) == 20.0
    assert nearest_rank(values, 40) == 20.0
    assert nearest_rank(values, 50) == 35.0
    assert nearest_rank(values, 100) == 50.0
    assert nearest_rank([7.0], 99) == 7.0


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0.1, 100),
)
def test_nearest_rank_is_an_observed_value_at_the_right_rank(
    values: list[float], pct: float
) -> None:
    v = nearest_rank(values, pct)
    assert v in values
    # At least pct% of the values are <= the result.
    assert sum(1 for x in values if x <= v) >= math.ceil(pct / 100 * len(values)) - 1e-9


def test_quantities() -> None:
    assert parse_bytes("128Mi") == 128 * MI
    assert parse_bytes("4Ki") == 4096
    assert parse_bytes("1.5Gi") == int(1.5 * 1024 * MI)
    assert parse_bytes(1000) == 1000
    for bad in ("12 apples", "-1Mi", True, None):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    assert ceil_mi(MI + 1) == "2Mi"
    assert ceil_mi(MI) == "1Mi"
    assert human_bytes(25.5 * 1024) == "25.5 KiB"
    assert human_bytes(-2 * MI, signed=True) == "-2 MiB"


def test_recommended_limit_uses_upper_ci_and_rounds_up_to_mi() -> None:
    fit = fit_ols([1000.0, 2000.0, 3000.0, 4000.0], [60e6, 85e6, 111e6, 134e6])
    assert fit is not None and fit.slope_ci is not None
    rec = recommend_limit(fit=fit, target_sessions=8000, target_source="option", headroom=0.2)
    expected = (fit.intercept + fit.slope_ci[1] * 8000) * 1.2
    assert rec.quantity == f"{math.ceil(expected / MI)}Mi"
    assert rec.limit_bytes >= expected > rec.limit_bytes - MI


def test_summary_of_an_oom_run(tmp_path: Path) -> None:
    spec = SYNTHETIC["oom-full"]
    s = summarize(load_run(write_run(tmp_path, spec)))
    assert s.oom and s.oom_batch is not None and s.oom_sessions is not None
    # Only clean batches before the kill are fitted; the true slope is inside the interval.
    assert all(r.batch < s.oom_batch for r in s.rows if r.in_fit)
    assert s.fit is not None and s.fit.slope_ci is not None
    assert s.fit.slope_ci[0] < spec.bytes_per_session < s.fit.slope_ci[1]
    assert s.fit.r2 is not None and s.fit.r2 > 0.99
    # Predicted OOM lies between the last surviving batch and the killing one.
    assert s.predicted_oom_sessions is not None
    assert s.oom_sessions - spec.batch_size <= s.predicted_oom_sessions <= s.oom_sessions
    assert s.recommendation is not None
    assert s.recommendation.target_sessions == 2 * s.oom_sessions
    assert s.recommendation.limit_bytes > spec.limit_mi * MI
    assert s.restart_peak_bytes is not None and s.crash_loop_likely
    assert s.cumulative_ooms == 2 and s.restarts == 2
    assert s.latency is not None and s.latency.reached_running < s.latency.sessions
    assert s.memray is not None and s.memray.growth[0].function == "_store_object"
    data = s.to_json()
    assert data["fit"]["bytes_per_session"] == pytest.approx(s.fit.slope)


def test_summary_of_a_surviving_run_targets_upstream(tmp_path: Path) -> None:
    s = summarize(load_run(write_run(tmp_path, SYNTHETIC["survived-bare"])))
    assert not s.oom and s.restart_peak_bytes is None and s.oom_point is not None
    assert s.recommendation is not None
    assert s.recommendation.target_sessions == UPSTREAM_SESSIONS
    assert s.recommendation.target_source == "upstream production"
    s2 = summarize(load_run(s.run.path), target_sessions=100)
    assert s2.recommendation is not None and s2.recommendation.target_sessions == 100


def test_single_batch_has_no_fit(tmp_path: Path) -> None:
    s = summarize(load_run(write_run(tmp_path, SYNTHETIC["one-batch"])))
    assert s.fit is None and s.recommendation is None and s.predicted_oom_sessions is None


def test_memray_growth_is_a_diff_by_site() -> None:
    def site(fn: str, size: int, count: int = 1) -> AllocationSite:
        return AllocationSite(fn, "m.py", 1, size, count)

    first = MemrayBatch(1, 100, 10, (site("a", 50), site("b", 40), site("gone", 10)))
    last = MemrayBatch(5, 900, 90, (site("a", 60), site("b", 500, 7), site("new", 300)))
    m = summarize_memray([first, last])
    assert m is not None
    assert [(d.function, d.delta_bytes) for d in m.growth] == [
        ("b", 460),
        ("new", 300),
        ("a", 10),
    ]
    assert m.growth[0].delta_count == 6
    assert [t.function for t in m.top] == ["b", "new", "a"]
    assert summarize_memray([]) is None


def test_restart_without_oom_stops_the_fit(tmp_path: Path) -> None:
    run = write_run(tmp_path, Synthetic(limit_mi=512, max_batches=6, run_suffix="ffff"))
    lines = (run / "samples.csv").read_text().splitlines()
    header = lines[0].split(",")
    i = header.index("restart_count")
    # From batch 3 on the container has restarted for another reason: the heap was reset, so
    # those rows are out of the fit.
    for n in range(4, len(lines)):
        cells = lines[n].split(",")
        cells[i] = "1"
        lines[n] = ",".join(cells)
    (run / "samples.csv").write_text("\n".join(lines) + "\n")
    s = summarize(load_run(run))
    assert [r.batch for r in s.rows if r.in_fit] == [1, 2]
    assert not s.oom and s.restarts == 1


def test_a_second_kill_before_any_reading_is_a_crash_loop(tmp_path: Path) -> None:
    """A restarted operator killed again too fast for the kubelet's stats is still flagged."""
    import csv

    from triage.report import render_report

    run_dir = write_run(tmp_path, SYNTHETIC["oom-full"])
    path = run_dir / "samples.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    first = next(i for i, r in enumerate(rows) if r["oom_killed"] == "1")
    first_count = int(rows[first]["oom_count"])
    for r in rows[first + 1 :]:
        # No reading of the restarted container; one more kill at the end.
        r["working_set_bytes"] = r["rss_bytes"] = r["operator_rss_bytes"] = ""
        r["oom_count"] = str(first_count)
    rows[-1]["oom_count"] = str(first_count + 1)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    s = summarize(load_run(run_dir))
    assert s.restart_peak_bytes is None
    assert s.ooms_after_restart == 1
    assert s.crash_loop_likely
    assert s.to_json()["memory"]["ooms_after_restart"] == 1
    written = render_report(s, out_dir=tmp_path / "out")
    md = written.markdown.read_text()
    assert "OOMKilled again 1 time.\n\n| |" in md
    assert "killed again 1 time before" in written.html.read_text()

    # Without the second kill and without a reading, nothing claims a crash loop.
    rows[-1]["oom_count"] = str(first_count)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    s = summarize(load_run(run_dir))
    assert s.ooms_after_restart == 0 and not s.crash_loop_likely
