"""What the benchmarks share: where the cluster's kubeconfig is, how a started operator stops,
what every result file says about where it was measured.

The benchmarks run as scripts (`python bench/NAME.py`), so this directory is on sys.path
and they import this module by its bare name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

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


def write_result(path: Path, *, context: str, server: str, data: dict[str, Any]) -> None:
    """`data` as JSON at `path`, after when, against which cluster and on what host."""
    out = {
        "schema": 1,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cluster": {"context": context, "server": server},
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        **data,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
