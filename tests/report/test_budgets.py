"""The regression gate: a pure evaluation, and `triage ci --from` on existing run dirs."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from tests.conftest import run_cli
from tests.report.conftest import SYNTHETIC
from tests.report.synthetic import Synthetic, write_run
from triage.commands.ci import DEFAULT_BUDGETS
from triage.errors import BudgetFileError
from triage.exitcodes import ExitCode
from triage.report import Budgets, RunSummary, evaluate_budgets, load_budgets, summarize
from triage.report.budgets import parse_budgets
from triage.rundir import load_run

pytestmark = pytest.mark.unit


@pytest.fixture
def summaries(tmp_path: Path) -> list[RunSummary]:
    survived = write_run(tmp_path / "a", SYNTHETIC["survived-bare"])
    burst = write_run(tmp_path / "b", SYNTHETIC["burst"])
    return [summarize(load_run(survived)), summarize(load_run(burst))]


def test_checked_in_budgets_parse() -> None:
    budgets = load_budgets(DEFAULT_BUDGETS)
    assert "terminal-sessions" in budgets.scenarios and "burst" in budgets.scenarios
    assert budgets.scenarios["burst"]["latency_p99"] == 30.0


def test_pass_fail_skipped_missing(summaries: list[RunSummary]) -> None:
    survived, _burst = summaries
    assert survived.fit is not None and survived.steady_measure_bytes is not None
    slope = survived.fit.slope
    budgets = Budgets(
        scenarios={
            "terminal-sessions": {
                "bytes_per_session": slope * 1.1,  # pass
                "steady_rss": survived.steady_measure_bytes - 1,  # fail
                "peak_after_restart": 1.0,  # skipped: no OOM, so no restart peak
            },
            "burst": {"latency_p50": 1000.0, "latency_p99": 0.001},
            "noise-pods": {"steady_rss": 1.0},  # missing: no run
        }
    )
    results = {(r.scenario, r.metric): r for r in evaluate_budgets(summaries, budgets)}
    assert results["terminal-sessions", "bytes_per_session"].status == "pass"
    assert results["terminal-sessions", "steady_rss"].status == "fail"
    assert results["terminal-sessions", "peak_after_restart"].status == "skipped"
    assert results["burst", "latency_p50"].status == "pass"
    assert results["burst", "latency_p99"].exceeded
    assert results["noise-pods", "steady_rss"].status == "missing"
    assert not results["noise-pods", "steady_rss"].exceeded
    assert "burst: startup latency P99" in results["burst", "latency_p99"].describe


def test_runners_that_never_started_count_as_slowest(summaries: list[RunSummary]) -> None:
    _survived, burst = summaries
    lat = burst.latency
    assert lat is not None
    unstarted = lat.sessions - lat.reached_running
    assert unstarted == 12  # one in 25 of the synthetic burst never starts
    budgets = Budgets(
        scenarios={
            "burst": {
                "latency_p90": 1000.0,
                "latency_p99": 1000.0,
                "not_started": 0.0,
            }
        }
    )
    results = {r.metric: r for r in evaluate_budgets(summaries, budgets)}
    # P90's rank (270 of 300) is among the 288 that started: the 270th fastest of them,
    # not the 90th percentile of the started ones alone.
    started = sorted(lat.durations)
    assert results["latency_p90"].actual == started[269]
    assert results["latency_p90"].actual != lat.total.values[90]
    assert results["latency_p90"].status == "pass"
    # P99's rank (297) falls among the unstarted: no finite budget can pass it.
    assert results["latency_p99"].exceeded
    assert "never" in results["latency_p99"].describe
    assert results["latency_p99"].to_json()["actual"] is None
    assert results["latency_p99"].to_json()["never"] is True
    assert results["not_started"].actual == 12
    assert results["not_started"].exceeded


def test_every_run_of_a_scenario_is_judged(tmp_path: Path) -> None:
    ok = write_run(tmp_path / "a", Synthetic(limit_mi=512, max_batches=4, run_suffix="0aaa"))
    bad = write_run(
        tmp_path / "b",
        Synthetic(limit_mi=512, max_batches=4, bytes_per_session=90_000, run_suffix="0bbb"),
    )
    budgets = Budgets(scenarios={"terminal-sessions": {"bytes_per_session": 40_000.0}})
    results = evaluate_budgets([summarize(load_run(d)) for d in (ok, bad)], budgets)
    assert [r.status for r in results] == ["pass", "fail"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema": 2}, "schema: 1"),
        ({"schema": 1, "scenarios": {}}, "'scenarios' must map"),
        ({"schema": 1, "scenarios": {"x": {"heap": 1}}}, "unknown budget"),
        ({"schema": 1, "scenarios": {"x": {"steady_rss": "lots"}}}, "not a Kubernetes quantity"),
        ({"schema": 1, "scenarios": {"x": {"latency_p50": "soon"}}}, "a duration"),
    ],
)
def test_bad_budgets(data: object, message: str) -> None:
    with pytest.raises(BudgetFileError, match=message):
        parse_budgets(data, source=Path("b.yaml"))


def test_durations_and_quantities() -> None:
    b = parse_budgets(
        {"schema": 1, "scenarios": {"x": {"latency_p50": "250ms", "steady_rss": "96Mi"}}},
        source=Path("b.yaml"),
    )
    assert b.scenarios["x"] == {"latency_p50": 0.25, "steady_rss": 96 * 1024 * 1024}


def _budget_file(tmp_path: Path, bytes_per_session: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "schema": 1,
                "scenarios": {
                    "terminal-sessions": {"bytes_per_session": bytes_per_session, "ooms": 0}
                },
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("limit", "code"), [("64Ki", ExitCode.OK), ("8Ki", ExitCode.BUDGET_EXCEEDED)]
)
def test_ci_from_run_dir(tmp_path: Path, limit: str, code: ExitCode) -> None:
    run = write_run(tmp_path / "runs", SYNTHETIC["survived-bare"])
    out = tmp_path / "gate"
    result = run_cli(
        [
            "ci",
            "--from",
            str(run),
            "--budgets",
            str(_budget_file(tmp_path, limit)),
            "--out",
            str(out),
            "--junit",
            str(out / "junit.xml"),
        ],
    )
    assert result.exit_code == code, result.output
    assert (run / "report.html").is_file()
    assert (out / "ci-summary.md").is_file() and (out / "ci-summary.json").is_file()
    # One JUnit test case per budget, failed exactly when the budget was exceeded.
    suite = ElementTree.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "terminal-sessions.bytes_per_session" in cases
    failed = cases["terminal-sessions.bytes_per_session"].find("failure") is not None
    assert failed == (code == ExitCode.BUDGET_EXCEEDED)
    assert suite.get("failures") == ("1" if failed else "0")
    if code == ExitCode.BUDGET_EXCEEDED:
        assert "budget exceeded" in result.output
        assert "terminal-sessions: bytes per session" in result.output


def test_ci_bad_budgets_file(tmp_path: Path) -> None:
    result = run_cli(["ci", "--from", str(tmp_path), "--budgets", str(tmp_path / "x.yaml")])
    assert result.exit_code == ExitCode.USAGE
    assert "no such budgets file" in result.output


def test_ci_from_recorded_runs(recorded_run: Path, tmp_path: Path) -> None:
    s = summarize(load_run(recorded_run))
    generous = {"peak_working_set": "64Gi", "steady_rss": "64Gi", "ooms": 10_000}
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(yaml.safe_dump({"schema": 1, "scenarios": {s.scenario: generous}}))
    args = [
        "ci",
        "--from",
        str(recorded_run),
        "--budgets",
        str(budgets),
        "--out",
        str(tmp_path / "g"),
    ]
    result = run_cli(args)
    assert result.exit_code == ExitCode.OK, result.output

    strict = {"peak_working_set": "1Ki"}
    budgets.write_text(yaml.safe_dump({"schema": 1, "scenarios": {s.scenario: strict}}))
    result = run_cli(args)
    assert result.exit_code == ExitCode.BUDGET_EXCEEDED, result.output
