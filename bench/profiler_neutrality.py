"""Does profiling change the figure it explains? The same load with and without memray.

Runs alternate (none, memray, none, memray, ...) against the deployed operator with its
unfixed full cache (AGENTIC_CACHE_MODE=full), so every run reaches a real OOM kill, and
each is read back with the report's own code. The claim held to: with memray the fitted
bytes per session agrees with the unprofiled run within 10% or 150 B/session (whichever is
larger), and so does the OOM point once memray's measured fixed cost is taken out. Medians
of the repeats; every run's figures are in the JSON.

    .venv/bin/python bench/profiler_neutrality.py [--repeats 3]

Needs the local cluster and the operator deployed (`make cluster-up deploy`). Prints a table
and writes bench/results/profiler_neutrality.json.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, cluster_of, write_result  # noqa: E402
from _reproduce import reproduce  # noqa: E402

RESULTS = REPO / "bench" / "results" / "profiler_neutrality.json"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS, repeats=3)
    parser.add_argument("--mem-limit", default="128Mi")
    parser.add_argument("--namespaces", type=int, default=80)
    parser.add_argument("--sessions-per-ns", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console()
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "memray": []}
    for i in range(args.repeats):
        for profile in ("none", "memray"):
            run_dir = (
                REPO
                / "reports"
                / f"neutral-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{profile}-{i}"
            )
            # --cleanup-wait: the full cache holds every session in the cluster, so the next
            # run's idle reading without memray (its fixed cost's "before") must not re-list
            # this run's namespaces while they are still being deleted (it read 53 MiB
            # against 21 with memray when it did).
            t = reproduce(
                ["--mem-limit", args.mem_limit, "--set-env", "AGENTIC_CACHE_MODE=full",
                 "--namespaces", str(args.namespaces), "--sessions-per-ns", str(args.sessions_per_ns),
                 "--batch-size", str(args.batch_size), "--profile", profile, "--no-cold-start",
                 "--settle-after-oom", "5", "--cleanup", "--cleanup-wait"],
                kubeconfig=args.kubeconfig, run_dir=run_dir,
            )  # fmt: skip
            s = t.summary
            runs[profile].append({
                "run_dir": str(run_dir.relative_to(REPO)),
                "bytes_per_session": s.fit.slope if s.fit else None,
                "working_set_bytes_per_session": s.ws_fit.slope if s.ws_fit else None,
                "oom_sessions": s.oom_sessions,
                "oom_point": s.oom_point,
                "fixed_cost_bytes": s.profiler_fixed_cost,
                "seconds": round(t.seconds, 1),
            })  # fmt: skip
            console.print(profile, runs[profile][-1])

    def med(profile: str, key: str) -> float:
        values = [r[key] for r in runs[profile] if r[key] is not None]
        return statistics.median(values) if values else float("nan")

    a, b = med("none", "bytes_per_session"), med("memray", "bytes_per_session")
    oa, ob = med("none", "oom_point"), med("memray", "oom_point")
    slope_ok = abs(a - b) <= max(0.10 * a, 150)
    oom_ok = abs(oa - ob) <= 0.10 * oa
    table = Table(title=f"profiling and the figure it explains ({args.repeats} runs each, medians)")
    for col in ("", "none", "memray", "agrees"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(
        "bytes/session (unreclaimable)", f"{a:,.0f}", f"{b:,.0f}", "yes" if slope_ok else "NO"
    )
    table.add_row("bytes/session (working set)", f"{med('none', 'working_set_bytes_per_session'):,.0f}",
                  f"{med('memray', 'working_set_bytes_per_session'):,.0f}", "")  # fmt: skip
    table.add_row(
        "OOM point (memray: fixed cost out)", f"{oa:,.0f}", f"{ob:,.0f}", "yes" if oom_ok else "NO"
    )
    table.add_row(
        "memray fixed cost", "", f"{med('memray', 'fixed_cost_bytes') / 2**20:.1f} MiB", ""
    )
    console.print(table)
    write_result(args.out, cluster=cluster_of(args.kubeconfig), data={
        "load": vars(args) | {"out": str(args.out), "kubeconfig": "..."},
        "runs": runs,
        "median": {"bytes_per_session": {"none": a, "memray": b},
                   "oom_point": {"none": oa, "memray": ob}},
        "agrees": {"bytes_per_session": slope_ok, "oom_point": oom_ok},
    })  # fmt: skip
    console.print(f"wrote {args.out}")
    return 0 if slope_ok and oom_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
