"""Fixtures for the report tests: synthetic run directories and the recorded ones.

Synthetic runs (see synthetic.py) are generated inputs for rendering, not measurements.
Recorded real runs are every directory under tests/data/runs/ with a run.json; tests that
take `any_run` run over both, so a new recording is covered without editing a test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.synthetic import MI, Synthetic, write_run

DATA_RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"
RECORDED = sorted(p for p in DATA_RUNS.glob("*") if (p / "run.json").is_file())

#: Synthetic shapes a report must handle: an OOM with everything captured, a run that
#: survived with no profiles, a burst with latency, and a run that stopped after one batch.
SYNTHETIC: dict[str, Synthetic] = {
    "oom-full": Synthetic(latency_sessions=120),
    "survived-bare": Synthetic(
        limit_mi=512, max_batches=6, memray=False, pyspy=False, run_suffix="c3d4"
    ),
    "burst": Synthetic(
        scenario="burst", limit_mi=256, max_batches=3, latency_sessions=300, run_suffix="e5f6"
    ),
    "one-batch": Synthetic(limit_mi=256, max_batches=1, memray=False, run_suffix="0001"),
}


@pytest.fixture
def oom_run(tmp_path: Path) -> Path:
    return write_run(tmp_path, SYNTHETIC["oom-full"])


def materialize(name: str, tmp_path: Path) -> Path:
    """A writable run directory for a synthetic spec name or a recorded run path."""
    if name in SYNTHETIC:
        return write_run(tmp_path, SYNTHETIC[name])
    # Recorded runs are copied: rendering writes report files into the run directory.
    src = Path(name)
    return Path(shutil.copytree(src, tmp_path / src.name))


#: None while there is no recorded run: the tests that take one are then reported skipped.
_RECORDED_OR_NONE: list[str | None] = [str(p) for p in RECORDED] or [None]


@pytest.fixture(params=_RECORDED_OR_NONE, ids=lambda p: Path(p).name if p else "none-recorded")
def recorded_run(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Each recorded run in turn, as a writable copy; skipped while there is none."""
    if request.param is None:
        pytest.skip("no recorded runs under tests/data/runs/ yet")
    return materialize(request.param, tmp_path)


ALL_RUNS = [pytest.param(k, id=f"synthetic-{k}") for k in SYNTHETIC] + [
    pytest.param(str(p), id=f"recorded-{p.name}") for p in RECORDED
]

__all__ = ["ALL_RUNS", "MI", "RECORDED", "SYNTHETIC", "materialize"]
