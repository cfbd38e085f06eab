"""100,000 terminal sessions in 10,000 managed namespaces: the operator's RSS, sync, peak.

Upstream's Go operator was OOMKilled at 512Mi with 4,319 sessions. This loads the real
cluster with 25 times that many, shaped as upstream's reproducer makes them (minimal
sessions: a display name and a one-line prompt, status {phase: Completed}; the minimal
shape keeps etcd and the apiserver on this 2-core machine within reach, and the operator
keeps only a packed record per terminal session whatever the shape), ten per namespace,
each namespace with a ready ProjectSettings, then starts the operator several times and
measures: the time from process start to /readyz (all caches synced), RSS right after sync,
RSS in steady state after a /metrics scrape (so what the exposition leaves resident counts),
and the cold-start peak (VmHWM) against that steady state.
Budgets: RSS <= 64 MiB, sync <= 90 s, peak/steady <= 1.3. A benchmark, not CI: loading
takes several minutes. Results: a table and bench/results/operator_scale.json.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import bench_parser, write_result
from _sessions import PER_NS, Loader
from operator_memory import REPO, RESULTS, mib, run_operator

PREFIX = "bench-x"
BUDGET_RSS = 64 * 2**20
BUDGET_SYNC = 90.0
BUDGET_PEAK = 1.3


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, repeats=3)
    p.add_argument(
        "--sessions", type=int, default=100_000, help="terminal sessions, 10 per namespace"
    )
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--keep", action="store_true", help="leave the bench data in the cluster")
    p.add_argument("--purge", action="store_true", help="also delete the bench namespaces")
    p.add_argument("--name", default="operator_scale")
    args = p.parse_args(argv)

    loader = Loader.connect(args.kubeconfig, threads=args.threads)
    cfg = loader.kube.config
    data: dict[str, Any] = {
        "benchmark": args.name,
        "sessions": args.sessions,
        "namespaces": args.sessions // PER_NS,
        "per_namespace": PER_NS,
        "session_shape": "minimal (displayName, one-line initialPrompt; status {phase: Completed})",
        "budgets": {
            "rss_bytes": BUDGET_RSS,
            "sync_seconds": BUDGET_SYNC,
            "peak_over_steady": BUDGET_PEAK,
        },
    }
    try:
        t0 = time.monotonic()
        ns = loader.namespaces(PREFIX, args.sessions // PER_NS)
        print(
            f"{len(ns)} namespaces with ProjectSettings ({time.monotonic() - t0:.0f}s)", flush=True
        )
        wrote = loader.sessions(ns, per_ns=PER_NS, phase="Completed", minimal=True)
        loader.manage(ns)
        data["load_seconds"] = round(time.monotonic() - t0, 1)
        print(
            f"{args.sessions} sessions ready ({wrote} written, {data['load_seconds']:.0f}s)",
            flush=True,
        )
        runs = [
            run_operator(args.kubeconfig, settle=10.0, timeout=600) for _ in range(args.repeats)
        ]
        for r in runs:
            print(
                f"  ready {r.ready_seconds:.1f}s  RSS after sync {mib(r.rss_after_sync)}"
                f"  steady {mib(r.rss_steady)}  peak {mib(r.hwm)}  sessions {int(r.sessions_cached)}",
                flush=True,
            )
        data["runs"] = [r.__dict__ for r in runs]
        data["median"] = {
            "ready_seconds": statistics.median(r.ready_seconds for r in runs),
            "rss_after_sync": statistics.median(r.rss_after_sync for r in runs),
            "rss_steady": statistics.median(r.rss_steady for r in runs),
            "hwm": statistics.median(r.hwm for r in runs),
            "peak_over_steady": statistics.median(r.hwm / r.rss_steady for r in runs),
            "sessions_cached": statistics.median(r.sessions_cached for r in runs),
        }
    finally:
        if not args.keep:
            print("cleaning up bench data ...", flush=True)
            loader.cleanup((f"{PREFIX}-",), purge=args.purge)
        loader.kube.close()

    m = data["median"]
    data["within_budget"] = {
        "rss": m["rss_steady"] <= BUDGET_RSS and m["rss_after_sync"] <= BUDGET_RSS,
        "sync": m["ready_seconds"] <= BUDGET_SYNC,
        "peak": m["peak_over_steady"] <= BUDGET_PEAK,
    }
    out = RESULTS / f"{args.name}.json"
    write_result(out, data, cluster=(cfg.context_name or "", cfg.server))
    print(
        f"\n{'sessions':>10}{'namespaces':>12}{'ready s':>9}{'RSS sync':>11}{'RSS steady':>12}"
        f"{'peak':>11}{'peak/steady':>13}"
    )
    print(
        f"{int(m['sessions_cached']):>10}{data['namespaces']:>12}{m['ready_seconds']:>9.1f}"
        f"{mib(m['rss_after_sync']):>11}{mib(m['rss_steady']):>12}{mib(m['hwm']):>11}"
        f"{m['peak_over_steady']:>13.2f}"
    )
    print(f"budgets: RSS <= 64 MiB, sync <= 90 s, peak/steady <= 1.3; medians of {args.repeats}")
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
