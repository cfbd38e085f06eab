"""Does the lean operator survive 128Mi with 20,000 terminal sessions? One real run says.

The upstream Go operator was OOMKilled at 512Mi with 4,319 sessions. This drives the deployed
operator (lean cache mode, no profiler: memray's own bookkeeping would be measured too) with
`triage reproduce` at the given limit until every session exists, and reads the verdict from
the run directory the same way the report does: peak and steady working set against the
limit, restarts and cumulative OOM kills, and the fitted bytes per session.

    .venv/bin/python bench/operator_survival.py [--sessions 20000] [--mem-limit 128Mi]

Needs the local cluster and the operator deployed (`make cluster-up deploy`). Prints a table
and writes bench/results/operator_survival.json; the run directory stays in reports/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser  # noqa: E402

from triage.report import summarize  # noqa: E402
from triage.rundir import load_run  # noqa: E402

RESULTS = REPO / "bench" / "results" / "operator_survival.json"
MI = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--sessions-per-ns", type=int, default=10)
    parser.add_argument("--namespaces-per-batch", type=int, default=200)
    parser.add_argument("--mem-limit", default="128Mi")
    parser.add_argument("--settle", type=float, default=30.0, help="--settle-max of the run")
    parser.add_argument("--cleanup", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)

    console = Console()
    namespaces = max(args.sessions // args.sessions_per_ns, 1)
    batches = -(-namespaces // args.namespaces_per_batch)
    run_dir = REPO / "reports" / f"survival-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    cmd = [
        str(REPO / ".venv" / "bin" / "triage"), "reproduce",
        "--kubeconfig", args.kubeconfig,
        "--mem-limit", args.mem_limit,
        "--scenario", "terminal-sessions",
        "--namespaces", str(namespaces),
        "--sessions-per-ns", str(args.sessions_per_ns),
        "--batch-size", str(args.namespaces_per_batch),
        "--max-batches", str(batches),
        "--settle-max", str(args.settle),
        "--profile", "none",
        "--cleanup" if args.cleanup else "--keep",
        "--out", str(run_dir),
    ]  # fmt: skip
    console.print(f"$ {' '.join(cmd)}", highlight=False)
    t0 = time.monotonic()
    # The reproduce command draws its own live view; its exit code is part of the verdict.
    rc = subprocess.run(cmd, check=False).returncode
    seconds = time.monotonic() - t0

    summary = summarize(load_run(run_dir))
    limit = summary.limit_bytes or 0
    peak = summary.peak_working_set_bytes or 0
    survived = rc == 0 and not summary.oom and summary.cumulative_ooms == 0
    survived = survived and summary.restarts == 0 and summary.sessions_created >= args.sessions

    table = Table(title=f"lean operator at {args.mem_limit}: {args.sessions:,} terminal sessions")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("sessions created", f"{summary.sessions_created:,}")
    table.add_row("namespaces (managed)", f"{namespaces:,}")
    table.add_row("peak working set", f"{peak / MI:.1f} MiB ({peak / limit:.0%} of limit)")
    if summary.steady_measure_bytes is not None:
        table.add_row(
            "unreclaimable at the last batch", f"{summary.steady_measure_bytes / MI:.1f} MiB"
        )
    if summary.fit is not None:
        table.add_row("fitted bytes per session", f"{summary.fit.slope:.0f} B")
    table.add_row("restarts / cumulative OOMs", f"{summary.restarts} / {summary.cumulative_ooms}")
    table.add_row("triage reproduce exit code", str(rc))
    table.add_row("verdict", "[green]survived[/]" if survived else "[red]did not survive[/]")
    console.print(table)

    out = {
        "schema": 1,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "mem_limit": args.mem_limit,
        "limit_bytes": limit,
        "sessions_target": args.sessions,
        "sessions_created": summary.sessions_created,
        "namespaces": namespaces,
        "peak_working_set_bytes": peak,
        "steady_unreclaimable_bytes": summary.steady_measure_bytes,
        "steady_working_set_bytes": summary.steady_working_set_bytes,
        "bytes_per_session": summary.fit.slope if summary.fit else None,
        "restarts": summary.restarts,
        "cumulative_ooms": summary.cumulative_ooms,
        "reproduce_exit_code": rc,
        "seconds": seconds,
        "survived": survived,
        "run_dir": str(run_dir.relative_to(REPO)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}", highlight=False)
    return 0 if survived else 1


if __name__ == "__main__":
    raise SystemExit(main())
