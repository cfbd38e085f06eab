"""Our operator against kopf, side by side in one run, on the same cluster and the same data.

kopf is the established Python operator framework; with one no-op event handler on
AgenticSessions it caches nothing and reconciles nothing, so it is the floor a Python
operator built the usual way (with the `kubernetes` package installed) starts from. Both run
as processes on this machine against the same sessions; RSS is read from /proc. Results: a
table on stdout and bench/results/operator_vs_kopf.json (medians of --repeats).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, stop_process  # noqa: E402
from _sessions import Loader, _now  # noqa: E402
from operator_memory import proc_status, run_operator  # noqa: E402

from tests.processes import free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
KOPF_HANDLER = """
import kopf

@kopf.on.event("vteam.ambient-code", "v1alpha1", "agenticsessions")
def noop(**_):
    pass
"""


def run_kopf(
    kubeconfig: str, *, expected: int, settle: float = 5.0, timeout: float = 300
) -> dict[str, Any]:
    """Start kopf, wait until it has seen every session, let it settle, read its RSS."""
    kopf_bin = shutil.which("kopf", path=str(Path(sys.executable).parent))
    if kopf_bin is None:
        raise SystemExit("kopf is not installed: pip install '.[bench]'")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        handler = Path(tmp) / "noop.py"
        handler.write_text(KOPF_HANDLER)
        log = open(Path(tmp) / "kopf.log", "wb")  # noqa: SIM115
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                kopf_bin,
                "run",
                "--standalone",
                "--all-namespaces",
                "--verbose",
                f"--liveness=http://127.0.0.1:{port}/healthz",
                str(handler),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": kubeconfig},
        )
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "kopf.log").read_text()[-2000:])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError("kopf did not become live")
            ready = time.monotonic() - t0
            # kopf logs each handled event at --verbose; wait until it has seen them all.
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                seen = (Path(tmp) / "kopf.log").read_bytes().count(b"Handler 'noop' succeeded")
                if seen >= expected:
                    break
                time.sleep(0.5)
            time.sleep(settle)
            samples = []
            for _ in range(3):
                samples.append(proc_status(proc.pid)["VmRSS"])
                time.sleep(0.5)
            return {
                "ready_seconds": round(ready, 3),
                "rss_steady": int(statistics.median(samples)),
                "hwm": proc_status(proc.pid)["VmHWM"],
            }
        finally:
            stop_process(proc)
            log.close()


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, repeats=3)
    p.add_argument("--sessions", type=int, default=5000, help="terminal sessions, 10 per namespace")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)

    loader = Loader.connect(args.kubeconfig, threads=24)
    result: dict[str, Any] = {
        "benchmark": "operator_vs_kopf",
        "started_at": _now(),
        "sessions": args.sessions,
    }
    loader.cleanup(("bench-k-",))

    def count() -> int:
        path = "/apis/vteam.ambient-code/v1alpha1/agenticsessions"
        return len(loader.kube.get(path, params={"limit": "100000"}).get("items", []))

    # Both operators see every session in the cluster, including any left by other runs:
    # measure at two sizes, each after both have processed everything, and take the slope.
    points: dict[str, dict[str, Any]] = {}
    for label in ("before", "after"):
        if label == "after":
            ns = loader.namespaces("bench-k", args.sessions // 10)
            loader.sessions(ns, per_ns=10, phase="Completed")
            loader.manage(ns)
        total = count()
        ours = [run_operator(args.kubeconfig).rss_steady for _ in range(args.repeats)]
        kopf = [
            run_kopf(args.kubeconfig, expected=total)["rss_steady"] for _ in range(args.repeats)
        ]
        points[label] = {"sessions": total, "agentic-operator": ours, "kopf": kopf}
    if not args.keep:
        loader.cleanup(("bench-k-",))

    added = points["after"]["sessions"] - points["before"]["sessions"]
    summary: dict[str, Any] = {}
    for name in ("agentic-operator", "kopf"):
        lo = statistics.median(points["before"][name])
        hi = statistics.median(points["after"][name])
        summary[name] = {
            "rss_before": lo,
            "rss_after": hi,
            "bytes_per_session": (hi - lo) / max(added, 1),
        }
    result["points"] = points
    result["results"] = summary
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "operator_vs_kopf.json").write_text(json.dumps(result, indent=2) + "\n")
    before, after = points["before"]["sessions"], points["after"]["sessions"]
    print(f"{'':18} {f'RSS @ {before}':>14} {f'RSS @ {after}':>14} {'B/session':>10}")
    for name, row in summary.items():
        lo, hi, per = row["rss_before"] / 2**20, row["rss_after"] / 2**20, row["bytes_per_session"]
        print(f"{name:18} {lo:13.1f}M {hi:13.1f}M {per:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
