"""Initial sync of the operator against a large cluster: how long, and how high the peak.

A restart (or a failover) is when an operator is most fragile: every object arrives at once
in the initial LIST. This measures, on the real cluster, the time from process start until
/readyz (all caches synced) and the cold-start peak RSS (VmHWM) against the steady state
after sync, for the lean cache and optionally for the unfixed `full` cache for contrast.
Results: a table on stdout and bench/results/operator_sync.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import bench_parser
from _sessions import PER_NS, Loader
from operator_memory import REPO, RESULTS, mib, run_operator


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, repeats=5)
    p.add_argument(
        "--sessions", type=int, default=10000, help="terminal sessions (10 per namespace)"
    )
    p.add_argument("--compare-full", action="store_true", help="also run the unfixed full cache")
    p.add_argument("--threads", type=int, default=24)
    p.add_argument("--keep", action="store_true", help="leave the bench data in the cluster")
    p.add_argument("--name", default="operator_sync")
    args = p.parse_args(argv)

    loader = Loader.connect(args.kubeconfig, threads=args.threads)
    result: dict[str, Any] = {
        "benchmark": args.name,
        "sessions": args.sessions,
        "per_namespace": PER_NS,
    }
    try:
        t0 = time.monotonic()
        ns = loader.namespaces("bench-t", args.sessions // PER_NS)
        wrote = loader.sessions(ns, per_ns=PER_NS, phase="Completed")
        loader.manage(ns)
        print(
            f"{args.sessions} sessions in {len(ns)} namespaces ({wrote} written, {time.monotonic() - t0:.0f}s)",
            flush=True,
        )
        modes = ["lean", "full"] if args.compare_full else ["lean"]
        for mode in modes:
            runs = [
                run_operator(args.kubeconfig, mode=mode, settle=5.0) for _ in range(args.repeats)
            ]
            result[mode] = {
                "ready_seconds_median": statistics.median(r.ready_seconds for r in runs),
                "ready_seconds_max": max(r.ready_seconds for r in runs),
                "cache_sync_seconds_median": statistics.median(
                    r.cache_sync_seconds for r in runs if r.cache_sync_seconds is not None
                ),
                "rss_steady_median": statistics.median(r.rss_steady for r in runs),
                "hwm_median": statistics.median(r.hwm for r in runs),
                "peak_over_steady_max": max(r.hwm / r.rss_steady for r in runs),
                "sessions_cached": runs[0].sessions_cached,
                "runs": [r.__dict__ for r in runs],
            }
            print(f"{mode}: done", flush=True)
    finally:
        if not args.keep:
            loader.cleanup(("bench-t-",))
        loader.kube.close()

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\n{'cache':<6}{'sessions':>10}{'ready s (med/max)':>20}{'sync s':>8}{'RSS steady':>12}{'peak':>12}{'peak/steady':>12}"
    )
    for mode in ("lean", "full"):
        if mode not in result:
            continue
        r = result[mode]
        print(
            f"{mode:<6}{int(r['sessions_cached']):>10}{r['ready_seconds_median']:>11.2f} / {r['ready_seconds_max']:<6.2f}"
            f"{r['cache_sync_seconds_median']:>8.2f}{mib(r['rss_steady_median']):>12}{mib(r['hwm_median']):>12}"
            f"{r['peak_over_steady_max']:>12.2f}"
        )
    print("budgets: sync <= 15 s, peak/steady <= 1.3")
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
