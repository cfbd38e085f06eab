"""Scenarios are data: every file loads, compiles to batches, and the CLI lists and shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from triage import scenario as sc
from triage.errors import UsageError
from triage.exitcodes import ExitCode

pytestmark = [pytest.mark.unit]

EXPECTED = {
    "terminal-sessions",
    "running-sessions",
    "managed-namespaces",
    "noise-pods",
    "condition-churn",
    "production-mix",
    "burst",
    "upstream-minimal",
}


def test_every_scenario_is_present_and_compiles_at_every_size() -> None:
    known = sc.scenarios()
    assert set(known) == EXPECTED
    assert sc.default_scenario() == "terminal-sessions"
    for name, scenario in known.items():
        for size in sc.SIZES:
            sized = scenario.sized(size)
            plans = sized.plan()
            assert plans, name
            assert [p.number for p in plans] == list(range(1, len(plans) + 1))
            assert all(len(p.namespaces) <= sized.batch_size for p in plans)
            indexes = [ns.index for p in plans for ns in p.namespaces]
            assert indexes == list(range(len(indexes))), "namespace indexes are unique and dense"


def test_terminal_sessions_matches_the_upstream_reproducer() -> None:
    s = sc.get("terminal-sessions")
    assert s.session_phase == "Completed"
    sized = s.sized(namespaces=300, sessions_per_ns=5, batch_size=50)
    assert sized.totals() == {
        "batches": 6,
        "namespaces": 300,
        "sessions": 1500,
        "pods": 0,
        "managed_namespaces": 300,
    }


def test_session_shape_is_read_and_checked(tmp_path: Path) -> None:
    assert sc.get("terminal-sessions").session_shape == "production"
    minimal = sc.get("upstream-minimal")
    assert minimal.session_shape == "minimal"
    assert minimal.sized("ci").totals() == sc.get("terminal-sessions").sized("ci").totals()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsession_phase: Completed\nsession_shape: huge\n")
    with pytest.raises(UsageError, match="session_shape 'huge' is not one of production, minimal"):
        sc._from_yaml(bad)


def test_namespace_prefix_is_read_and_checked(tmp_path: Path) -> None:
    assert sc.get("terminal-sessions").namespace_prefix == "oom-repro"
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: ok\nsession_phase: Completed\nnamespace_prefix: kopf-team-a\n")
    assert sc._from_yaml(ok).namespace_prefix == "kopf-team-a"
    for bad_prefix in ("Kopf", "-x", "x-", "a" * 51, "a_b", "1abc"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"name: bad\nsession_phase: Completed\nnamespace_prefix: '{bad_prefix}'\n")
        with pytest.raises(UsageError, match="namespace_prefix must be lowercase"):
            sc._from_yaml(bad)


def test_production_mix_keeps_the_upstream_ratios() -> None:
    full = sc.get("production-mix").sized(namespaces=763)
    totals = full.totals()
    assert totals["namespaces"] == 763
    assert totals["managed_namespaces"] == 674
    assert totals["sessions"] == 4319
    assert totals["pods"] == 477
    runners = sum(ns.runner_pods for p in full.plan() for ns in p.namespaces)
    assert runners == 80
    # Scaled down, the ratios hold within rounding.
    small = sc.get("production-mix").sized("ci").totals()
    assert abs(small["sessions"] / small["namespaces"] - 4319 / 763) < 0.5
    # Unmanaged namespaces get no sessions (sessions there are skipped upstream anyway).
    assert all(ns.sessions == 0 for p in full.plan() for ns in p.namespaces if not ns.managed)


def test_noise_pods_are_not_the_operators() -> None:
    s = sc.get("noise-pods").sized("small")
    assert s.session_phase is None
    assert all(not ns.managed and ns.sessions == 0 for p in s.plan() for ns in p.namespaces)
    assert s.totals()["pods"] > 0


def test_burst_leaves_sessions_to_the_operator() -> None:
    s = sc.get("burst")
    assert s.burst and s.session_phase is None and s.creates_runner_pods


def test_overrides_and_bad_sizes() -> None:
    s = sc.get("terminal-sessions").sized(namespaces=7, sessions_per_ns=3, batch_size=2)
    assert s.totals()["batches"] == 4 and s.totals()["sessions"] == 21
    with pytest.raises(UsageError, match="--batch-size"):
        sc.get("terminal-sessions").sized(batch_size=0)
    with pytest.raises(UsageError, match="unknown size"):
        sc.get("terminal-sessions").sized("huge")


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as e:
        sc.get("nope")
    assert e.value.exit_code == ExitCode.USAGE
    for name in EXPECTED:
        assert name in e.value.message


def test_cli_list_shows_every_scenario() -> None:
    result = run_cli(["scenarios", "list"])
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        assert name in result.stdout


def test_cli_show() -> None:
    result = run_cli(["scenarios", "show", "production-mix"])
    assert result.exit_code == 0, result.output
    assert "4,319" in result.stdout and "ProjectSettings" in result.stdout


def test_cli_show_unknown_is_one_line_and_exit_2() -> None:
    result = run_cli(["scenarios", "show", "nope"])
    assert result.exit_code == int(ExitCode.USAGE)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: unknown scenario 'nope'")
    assert "terminal-sessions" in lines[0]
    assert "Traceback" not in result.output
