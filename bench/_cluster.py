"""What the benchmarks share: where the cluster's kubeconfig is, how a started operator stops.

The benchmarks run as scripts (`python bench/NAME.py`), so this directory is on sys.path
and they import this module by its bare name.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path

#: The local cluster's kubeconfig (`make cluster-up` writes it), as the tests find it too.
DEFAULT_KUBECONFIG = os.environ.get(
    "TRIAGE_KUBECONFIG", str(Path.home() / ".kube" / "triage-local.yaml")
)


def add_kubeconfig_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=DEFAULT_KUBECONFIG)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process this benchmark started (by its PID), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
