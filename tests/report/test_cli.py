"""The `report` command: outputs on success; one clear line and exit 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from triage.exitcodes import ExitCode

pytestmark = pytest.mark.unit


def test_report_writes_three_files(oom_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["report", str(oom_run), "--out", str(out), "--target-sessions", "10000"])
    assert result.exit_code == 0, result.output
    assert "OOMKilled at" in result.output and "for 10,000 sessions" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "summary.json", "summary.md"]


def _bad_inputs(tmp_path: Path, oom_run: Path) -> dict[str, tuple[Path, str]]:
    malformed = oom_run / "samples.csv"
    malformed.write_text(malformed.read_text().replace("\nbatch,1,", "\nbatch,one,", 1))
    return {
        "missing": (tmp_path / "absent", "no such directory"),
        "not-a-run": (oom_run / "profiles", "not a triage run directory"),
        "malformed": (oom_run, "samples.csv: line 3, column 'batch'"),
    }


@pytest.mark.parametrize("case", ["missing", "not-a-run", "malformed"])
def test_report_bad_input_is_one_line(case: str, tmp_path: Path, oom_run: Path) -> None:
    path, message = _bad_inputs(tmp_path, oom_run)[case]
    result = run_cli(["report", str(path)])
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("command", ["report", "compare", "ci"])
def test_help_has_examples(command: str) -> None:
    result = run_cli([command, "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and f"triage {command}" in result.output


def test_report_accepts_a_directory_of_runs(oom_run: Path) -> None:
    # `reproduce --out reports/demo` then `report reports/demo`: the newest run is used.
    result = run_cli(["report", str(oom_run.parent)])
    assert result.exit_code == 0, result.output
    assert (oom_run / "report.html").is_file()
