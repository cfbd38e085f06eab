"""triage.options: everything checkable without a cluster, refused before any change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triage.errors import UsageError
from triage.exitcodes import ExitCode
from triage.options import ReproduceOptions, check_run_dir, parse_env_pairs, validate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ReproduceOptions(mem_limit="lots"), "--mem-limit 'lots' is not a memory quantity"),
        (
            ReproduceOptions(profile="perf"),
            "--profile 'perf' is not one of memray, py-spy, pprof, none",
        ),
        (ReproduceOptions(concurrency=0), "--concurrency 0 must be between 1 and 512"),
        (ReproduceOptions(restart_at=0), "--restart-at 0 must be at least 1"),
        (ReproduceOptions(pprof_port=70000), "--pprof-port 70000 is not a port"),
        (ReproduceOptions(pprof_env="on"), "--pprof-env 'on' is not KEY=VALUE"),
        (ReproduceOptions(scenario="nope"), "unknown scenario 'nope'"),
        (
            ReproduceOptions(scenario="./missing.yaml"),
            "scenario file ./missing.yaml does not exist",
        ),
    ],
)
def test_bad_options_are_one_line_naming_the_option(
    options: ReproduceOptions, message: str
) -> None:
    with pytest.raises(UsageError) as e:
        validate(options)
    assert message in e.value.message and "\n" not in e.value.message
    assert e.value.exit_code == ExitCode.USAGE


def test_valid_options_carry_the_profiler_settings() -> None:
    v = validate(ReproduceOptions(profile="pprof", pprof_port=7070, pprof_env="GO_PPROF=1",
                                  shape_sweep=True, max_batches=2))  # fmt: skip
    assert v.profiler.kind == "pprof" and v.profiler.pprof_port == 7070
    assert v.profiler.pprof_env == ("GO_PPROF", "1")
    assert v.scenario.shape_sweep and v.plans == 2
    assert [p.shape for p in v.scenario.plan()[:3]] == ["production", "minimal", "production"]
    assert parse_env_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}


def test_a_run_directory_that_holds_a_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text("{}")
    with pytest.raises(UsageError, match="already holds a run"):
        check_run_dir(tmp_path)


def test_an_unwritable_or_wrong_out_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        check_run_dir(afile)
    with pytest.raises(UsageError, match="cannot hold a run"):
        check_run_dir(Path("/proc/nope"))
    if os.geteuid() != 0:  # root writes anywhere; /proc above covers it
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(UsageError, match="cannot hold a run"):
            check_run_dir(ro / "run")


def test_a_full_disk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="free; a run needs at least"):
        check_run_dir(tmp_path, need_bytes=2**62)
    check_run_dir(tmp_path / "fine" / "run")  # and a normal one is accepted
    # ...without leaving anything behind: a run refused later must leave no empty run dir.
    assert not (tmp_path / "fine").exists()
    (tmp_path / "kept").mkdir()
    check_run_dir(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())
