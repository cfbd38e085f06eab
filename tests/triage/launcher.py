"""triage's memray launcher (triage/memray_launch.py) started as a real process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from triage import memray_launch

LAUNCHER = Path(memray_launch.__file__).resolve()


def launcher_argv(out: Path, *target: str, opts: Sequence[str] = ()) -> list[str]:
    """The command that runs `target` under the launcher, captures going to `out`."""
    return [sys.executable, str(LAUNCHER), "--output-dir", str(out), *opts, "--", *target]


@contextlib.contextmanager
def until_ready(
    out: Path, *target: str, opts: Sequence[str] = (), stderr: int = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[str]]:
    """The launcher running `target`, once the target has printed "ready".

    Whatever the test does with it, the process is not left behind: SIGKILL if it still runs.
    """
    proc = subprocess.Popen(
        launcher_argv(out, *target, opts=opts), stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
