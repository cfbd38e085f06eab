"""Removing what a run created: its namespaces, found by the run-id label, in the background.

Cleanup is the slowest part of a run (deleting a thousand namespaces took 109 s here) and
nothing the verdict needs waits for it, so the run restores the Deployment, releases its
lock, renders the report, and leaves the namespaces to a detached `python -m triage.cleanup`
child that records its PID in the run directory (cleanup.pid), deletes every namespace
labelled with the run id, waits for them to go, and writes cleanup.json with what it
deleted and what is stuck (with the finalizers or conditions holding each). Namespaces carry
the run id in their names, so a new run never collides with one still terminating.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentic_operator.resources import NAMESPACES
from triage.bodies import RUN_ID_LABEL
from triage.cluster import Cluster, connect
from triage.errors import RunFailedError
from triage.rundir.writer import atomic_write_text

RESULT = "cleanup.json"
PID_FILE = "cleanup.pid"


@dataclass
class CleanupResult:
    status: str  # "deleted" | "stuck" | "failed" | "running"
    deleted: list[str]
    stuck: dict[str, list[str]]  # namespace -> finalizers / reasons still holding it
    seconds: float
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "deleted"


def run_namespaces(cluster: Cluster, *, run_id: str) -> list[dict[str, Any]]:
    """Every namespace this run created (by its run-id label), with its status."""
    doc = cluster.client.list(
        NAMESPACES.path(), params={"labelSelector": f"{RUN_ID_LABEL}={run_id}"}
    )
    return list(doc.get("items", []))


def _holders(ns: dict[str, Any]) -> list[str]:
    finalizers = list(ns.get("spec", {}).get("finalizers") or [])
    finalizers += list(ns.get("metadata", {}).get("finalizers") or [])
    for cond in ns.get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type", "").endswith(
            ("ContentRemaining", "FinalizersRemaining", "DeletionFailure")
        ):
            finalizers.append(f"{cond['type']}: {cond.get('message', '')}")
    return finalizers or ["(terminating)"]


def cleanup(
    cluster: Cluster,
    *,
    run_id: str,
    timeout: float = 180,
    concurrency: int = 16,
    poll: float = 1.0,
) -> CleanupResult:
    """Delete the run's namespaces by label; wait up to `timeout`; name any that are stuck."""
    t0 = time.monotonic()
    names = [ns["metadata"]["name"] for ns in run_namespaces(cluster, run_id=run_id)]
    body = json.dumps({"propagationPolicy": "Background", "gracePeriodSeconds": 0}).encode()

    def delete(name: str) -> None:
        status, data = cluster.client.send("DELETE", NAMESPACES.path(name=name), body=body)
        if status not in (200, 202, 404, 409):
            raise RunFailedError(f"cannot delete namespace {name}: HTTP {status} {data[:200]!r}")

    with ThreadPoolExecutor(max(concurrency, 1)) as pool:
        list(pool.map(delete, names))
    remaining: list[dict[str, Any]] = []
    while True:
        remaining = run_namespaces(cluster, run_id=run_id)
        if not remaining or time.monotonic() >= t0 + timeout:
            break
        time.sleep(poll)
    stuck = {ns["metadata"]["name"]: _holders(ns) for ns in remaining}
    return CleanupResult(
        status="stuck" if stuck else "deleted",
        deleted=[n for n in names if n not in stuck],
        stuck=stuck,
        seconds=round(time.monotonic() - t0, 1),
    )


def write_result(run_dir: Path, result: CleanupResult) -> None:
    atomic_write_text(run_dir / RESULT, json.dumps(asdict(result), indent=2) + "\n", fsync=False)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def start_background(
    run_dir: Path, *, run_id: str, kubeconfig: str | None, context: str, timeout: float
) -> int:
    """Start the detached cleanup child; its PID is written to RUN_DIR/cleanup.pid."""
    write_result(run_dir, CleanupResult("running", [], {}, 0.0))
    argv = [sys.executable, "-m", "triage.cleanup", "--run-dir", str(run_dir),
            "--run-id", run_id, "--context", context, "--timeout", str(timeout)]  # fmt: skip
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    log = (run_dir / "cleanup.log").open("ab")
    proc = subprocess.Popen(  # start_new_session: a Ctrl-C at the terminal does not reach it
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    (run_dir / PID_FILE).write_text(f"{proc.pid}\n", encoding="utf-8")
    return proc.pid


def wait_background(run_dir: Path, *, timeout: float) -> dict[str, Any] | None:
    """Wait (bounded) for the background cleanup to write its result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = read_result(run_dir)
        if doc is not None and doc.get("status") != "running":
            return doc
        time.sleep(0.5)
    return read_result(run_dir)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m triage.cleanup")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--kubeconfig")
    p.add_argument("--context", required=True)
    p.add_argument("--timeout", type=float, default=300)
    a = p.parse_args(argv)
    try:
        cluster = connect(kubeconfig=a.kubeconfig, context=a.context, check=False)
        result = cleanup(cluster, run_id=a.run_id, timeout=a.timeout)
    except Exception as e:  # whatever it was, the run directory says so
        result = CleanupResult("failed", [], {}, 0.0, message=f"{e.__class__.__name__}: {e}")
    write_result(a.run_dir, result)
    (a.run_dir / PID_FILE).unlink(missing_ok=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_main(sys.argv[1:]))
