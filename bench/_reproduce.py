"""Running `triage reproduce` from a benchmark and reading its run back, one way for all.

The benchmarks that time or compare whole runs drive the deployed operator (`make deploy`:
ambient-code/agentic-operator) through the real CLI, exactly as a user would, and read the
verdict from the run directory with the report's own code.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from triage.report import RunSummary, summarize
from triage.rundir import load_run

REPO = Path(__file__).resolve().parent.parent
TRIAGE = REPO / ".venv" / "bin" / "triage"


@dataclass(frozen=True)
class Timed:
    run_dir: Path
    seconds: float
    returncode: int
    summary: RunSummary


def reproduce(args: list[str], *, kubeconfig: str, run_dir: Path, quiet: bool = True) -> Timed:
    """One run; seconds from the command's start until it exits (the verdict rendered)."""
    cmd = [str(TRIAGE), "reproduce", "--kubeconfig", kubeconfig, "--out", str(run_dir), *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=quiet, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0 and quiet:
        print(proc.stderr[-3000:])
    return Timed(run_dir, seconds, proc.returncode, summarize(load_run(run_dir)))
