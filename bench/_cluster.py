"""What the benchmarks share: how their command line starts, where the cluster's kubeconfig
is, how a started operator stops, what every result file says about where it was measured.

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


def bench_parser(
    doc: str, *, out: Path | None = None, repeats: int | None = None
) -> argparse.ArgumentParser:
    """A benchmark's command line: the first line of its docstring, --kubeconfig; for a
    benchmark with one result file, --out defaulting to `out`; for one that quotes medians,
    --repeats defaulting to `repeats`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--kubeconfig", default=DEFAULT_KUBECONFIG)
    if out is not None:
        parser.add_argument("--out", type=Path, default=out)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="runs; medians quoted")
    return parser


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


def cluster_of(kubeconfig: str) -> tuple[str, str]:
    """(context, server) of the kubeconfig's current context, for a result file."""
    from triage.cluster import resolve  # the benchmark's own sys.path set-up comes first

    config = resolve(kubeconfig, None)
    return str(config.context_name or ""), config.server


def write_result(path: Path, data: dict[str, Any], *, cluster: tuple[str, str] | None) -> None:
    """`data` as JSON at `path`, after when, against which cluster (context, server; None
    for a benchmark that needs none) and on what host."""
    out = {
        "schema": 1,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cluster": None if cluster is None else {"context": cluster[0], "server": cluster[1]},
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        **data,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
