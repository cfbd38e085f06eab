"""Rendering: every synthetic shape and every recorded run gives the three outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.report.conftest import ALL_RUNS, materialize
from tests.report.synthetic import Synthetic, write_run
from triage.report import render_report, summarize
from triage.rundir import load_run

pytestmark = pytest.mark.unit

# Anything that could make the browser fetch: the report must be one self-contained file.
NETWORK_REFS = re.compile(r"""(?:src|href)\s*=\s*["'](?!data:|#)|<link\b|@import|url\(""", re.I)


@pytest.mark.parametrize("name", ALL_RUNS)
def test_report_renders_all_outputs(name: str, tmp_path: Path) -> None:
    run_dir = materialize(name, tmp_path)
    s = summarize(load_run(run_dir))
    written = render_report(s, out_dir=run_dir)
    assert written.html is not None
    html = written.html.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not NETWORK_REFS.search(html), NETWORK_REFS.search(html)
    expected = int(re.search(r'data-figures-expected="(\d+)"', html).group(1))  # type: ignore[union-attr]
    assert html.count('<img class="figure"') == expected >= 1
    # Headline first: the verdict comes before the first figure.
    assert html.index('id="verdict"') < html.index("<figure") < html.index('id="run"')
    summary = json.loads(written.json.read_text())
    assert summary["schema"] == 2 and summary["run_id"] == s.run_id
    md = written.markdown.read_text()
    assert md.startswith("### ") and s.run_id in md


def test_oom_report_mentions_the_headline_numbers(oom_run: Path) -> None:
    s = summarize(load_run(oom_run))
    written = render_report(s, out_dir=oom_run / "out")
    html = written.html.read_text()  # type: ignore[union-attr]
    assert f"OOMKilled at {s.oom_sessions:,} sessions" in html
    assert "Crash loop likely" in html
    assert s.recommendation is not None and s.recommendation.quantity in html
    assert "Top sites at batch" in html and "_store_object" in html
    # The why, normalised per session, with the path to the allocation.
    assert s.why is not None and s.why.startswith("15.2 KiB of") and "via" in s.why
    assert "_watch_loop → _on_event" in html
    # Fitted on what the kernel cannot reclaim; the page cache beside it, explained.
    assert "Headline figures are fitted on <strong>unreclaimable memory</strong>" in html
    assert "of reclaimable memory (page cache" in html
    assert "created → running" in html
    md = written.markdown.read_text()
    assert "Bytes per session" in md and s.recommendation.quantity in md
    assert "🔴" in md
    for fig in (
        "memory-vs-sessions", "breakdown", "fit", "sites", "batches", "restarts", "heap",
        "latency",
    ):  # fmt: skip
        assert f'id="fig-{fig}"' in html


def test_empty_samples_still_render(tmp_path: Path, oom_run: Path) -> None:
    path = oom_run / "samples.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    for profile in (oom_run / "profiles").glob("batch-*"):
        __import__("shutil").rmtree(profile)
    s = summarize(load_run(oom_run))
    written = render_report(s, out_dir=tmp_path / "out")
    assert "samples.csv has no rows" in written.html.read_text()  # type: ignore[union-attr]


def test_interrupted_run_gets_a_warning_verdict(tmp_path: Path) -> None:
    run_dir = materialize("survived-bare", tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["outcome"] = {"status": "interrupted", "message": "Ctrl-C after batch 4"}
    (run_dir / "run.json").write_text(json.dumps(meta))
    written = render_report(summarize(load_run(run_dir)), out_dir=run_dir)
    html = written.html.read_text()  # type: ignore[union-attr]
    assert 'class="verdict warn"' in html and "Run interrupted" in html
    assert "🟡" in written.markdown.read_text()


def test_a_flat_run_predicts_no_oom_from_noise(tmp_path: Path) -> None:
    # 40 B a session: a lean operator. Its fitted line meets 128 MiB after millions of
    # sessions, which is noise extrapolated; the report says there is no OOM in sight.
    run_dir = write_run(
        tmp_path, Synthetic(bytes_per_session=40.0, noise_bytes=1_000.0, max_batches=6,
                            cache_per_session=0.0, memray=False, pyspy=False),
    )  # fmt: skip
    s = summarize(load_run(run_dir))
    assert s.fit is not None and 0 < s.fit.slope < 150 and not s.oom
    assert s.flat and s.predicted_oom_sessions is not None and s.predicted_oom_sessions > 2e6
    # (128 MiB - 40 MiB) / 150 B = 615,126: a bound, two significant digits, rounded down.
    assert s.sessions_at_floor == 610_000
    written = render_report(s, out_dir=run_dir)
    md = written.markdown.read_text()
    assert "| OOM point | none in sight: memory does not grow per session" in md
    assert "would hold more than 610,000 sessions" in md
    assert f"{s.predicted_oom_sessions:,.0f}" not in md
    html = written.html.read_text()  # type: ignore[union-attr]
    assert '<div class="value">none in sight</div>' in html
    summary = json.loads(written.json.read_text())
    assert summary["flat"] is True and summary["sessions_at_noise_floor"] == 610_000


def test_a_run_that_grows_predicts_its_oom_with_the_range(tmp_path: Path) -> None:
    run_dir = materialize("survived-bare", tmp_path)
    s = summarize(load_run(run_dir))
    assert not s.flat and s.sessions_at_floor is None and s.predicted_oom_range is not None
    md = render_report(s, out_dir=run_dir).markdown.read_text()
    lo = f"{s.predicted_oom_range[0]:,.0f}"
    head = f"| OOM point | ≈ {s.predicted_oom_sessions:,.0f} sessions (predicted; 95%: {lo} "
    assert head in md


@pytest.mark.parametrize("before", [False, True], ids=["", "restarted-before-baseline"])
@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "pod-replaced"])
def test_a_cold_start_restart_is_not_counted_against_the_operator(
    tmp_path: Path, in_place: bool, before: bool
) -> None:
    """An in-place cold start raises the container's restartCount: the report counts it as
    triage's, apart from the operator's own restarts. One before the first sample is in
    none of the counts."""
    spec = Synthetic(limit_mi=512, max_batches=4, memray=False, pyspy=False, cold_start=True,
                     cold_start_in_place=in_place, restarted_before_baseline=before,
                     run_suffix="own")  # fmt: skip
    run_dir = write_run(tmp_path, spec)
    s = summarize(load_run(run_dir))
    assert (s.restarts, s.own_restarts, s.cumulative_ooms) == (0, int(in_place), 0)
    assert s.frame["restart_count"].max() == int(in_place) + int(before)
    written = render_report(s, out_dir=run_dir)
    html = written.html.read_text()  # type: ignore[union-attr]
    md = written.markdown.read_text()
    besides = "besides 1 cold start triage restarted in place"
    assert (besides in html) == in_place
    assert ("| Restarts / cumulative OOMs | 0 / 0 (and 1 cold start by triage) |" in md) == in_place
    data = json.loads((run_dir / "summary.json").read_text())
    assert data["restarts"] == {"restarts": 0, "cumulative_ooms": 0, "by_triage": int(in_place)}


@pytest.mark.parametrize("timing", [True, False], ids=["from-container-start", "older-run"])
def test_cold_start_ready_is_timed_from_the_new_container(tmp_path: Path, timing: bool) -> None:
    spec = Synthetic(limit_mi=512, max_batches=4, memray=False, pyspy=False, cold_start=True,
                     cold_start_timing=timing, run_suffix="cold")  # fmt: skip
    run_dir = write_run(tmp_path, spec)
    s = summarize(load_run(run_dir))
    cs = s.cold_start
    assert cs is not None and cs.ready_seconds == 3.5 and cs.samples == 6
    written = render_report(s, out_dir=run_dir)
    html = written.html.read_text()  # type: ignore[union-attr]
    md = written.markdown.read_text()
    assert 'id="fig-cold-start"' in html
    if timing:
        assert cs.restart_seconds == 9.0 and cs.started_t is not None
        assert "ready 3.50 s after its container started, 9.00 s after the restart" in html
        assert "ready 3.50 s after its container started (9.00 s after the restart)" in md
    else:
        assert cs.restart_seconds is None and cs.started_t is None
        assert "ready 3.50 s</div>" in html and "ready 3.50 s |" in md
