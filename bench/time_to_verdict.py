"""Time to a verdict: upstream's default load, memray on, against the upstream-style loop.

The load is upstream's reproducer default (1,000 managed namespaces x 10 sessions, batches
of 50 namespaces) against the deployed lean operator at 128Mi with `--profile memray`. The
figure is the wall time of `triage reproduce` from its start until it exits with the report
rendered; the namespaces' deletion goes on in the background after it and is timed apart.

The upstream script applies and patches one session at a time with kubectl and sleeps 5 s
after each batch. Running it for 10,000 sessions takes most of an hour, so its rate is
measured on a sample in the same run (`--kubectl-sessions`, the same production-shaped
sessions) and its time for the full load is that rate's extrapolation plus its sleeps;
the table says which figures are measured and which extrapolated.

    .venv/bin/python bench/time_to_verdict.py [--repeats 3] [--kubectl-sessions 200]

Needs the local cluster and the operator deployed (`make cluster-up deploy`). Prints a table
and writes bench/results/time_to_verdict.json, with where each run's time went (`phases`).
`--phases-of RUN_DIR...` prints and saves only that breakdown, for runs made earlier: run the
benchmark from two checkouts in turn (`--repeats 1` each, alternating, on one cluster) and
compare their phases, since the total moves with the machine far more than any one phase.
"""

from __future__ import annotations

import calendar
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, cluster_of, write_result  # noqa: E402
from _reproduce import reproduce  # noqa: E402

from triage import bodies  # noqa: E402
from triage.cleanup import wait_background  # noqa: E402

RESULTS = REPO / "bench" / "results" / "time_to_verdict.json"
UPSTREAM_SLEEP = 5.0


def kubectl_rate(kubeconfig: str, sessions: int) -> float:
    """Sessions per second of the upstream loop: kubectl apply, then kubectl patch status."""
    run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-kubectl-bench"
    ns = bodies.namespace_name(run_id, 0)
    kc = ["kubectl", "--kubeconfig", kubeconfig]
    subprocess.run([*kc, "apply", "-f", "-"], input=bodies.namespace_body(ns, run_id=run_id,
                   managed=False), check=True, capture_output=True)  # fmt: skip
    status = json.dumps({"status": bodies.status_doc("Completed")})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            for i in range(sessions):
                name = f"s-{i:05d}"
                body = bodies.session_body(namespace=ns, name=name, run_id=run_id, n=i)
                path = Path(tmp) / "s.json"
                path.write_bytes(body)
                subprocess.run([*kc, "apply", "-f", str(path)], check=True, capture_output=True)
                subprocess.run([*kc, "-n", ns, "patch", "agenticsession", name, "--subresource=status",
                                "--type=merge", "-p", status], check=False, capture_output=True)  # fmt: skip
            return sessions / (time.monotonic() - t0)
    finally:
        subprocess.run([*kc, "delete", "namespace", ns, "--wait=false"], check=False,
                       capture_output=True)  # fmt: skip


def phases(run_dir: Path) -> dict[str, float]:
    """Where a run's time went, in seconds, from what the run directory recorded: to the
    baseline reading (the rollouts), creating and settling the batches, the cold start, the
    last capture's copy, the restore, the capture reads still running after the restore, and
    rendering the report."""
    meta = json.loads((run_dir / "run.json").read_text())
    with (run_dir / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    batches = [r for r in rows if r["kind"] == "batch"]
    events: dict[str, float] = {}
    began_restore: dict[str, float] = {}
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        events.setdefault(event["kind"], float(event["t_seconds"]))
        if event["kind"] == "restore" and "began_t_seconds" in (event.get("data") or {}):
            began_restore.setdefault("began_t_seconds", float(event["data"]["began_t_seconds"]))
    batches_end = float(batches[-1]["t_seconds"])
    cold, restored = events.get("cold-start", batches_end), events["restore"]
    # Older runs lack these events: their restore holds the last capture's copy and their
    # reads are timed against run.json's second-resolution clock.
    began = began_restore.get("began_t_seconds", cold)
    read = events.get("profiles-read")
    if read is None:
        read = _epoch(meta["finished_at"]) - _epoch(meta["started_at"])
    return {
        "baseline": float(rows[0]["t_seconds"]),
        "load": sum(float(r["batch_seconds"]) for r in batches),
        "settle": sum(float(r["settle_seconds"]) for r in batches),
        "between_batches": batches_end - float(rows[0]["t_seconds"])
        - sum(float(r["batch_seconds"]) + float(r["settle_seconds"]) for r in batches),
        "cold_start": cold - batches_end,
        "last_copy": began - cold,
        "restore": restored - began,
        "reads_after_restore": max(0.0, read - restored),
        # run.json is written last, just before the report: both mtimes on one clock
        "render": (run_dir / "report.html").stat().st_mtime
        - (run_dir / "run.json").stat().st_mtime,
    }  # fmt: skip


def _epoch(iso: str) -> float:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS, repeats=3)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--sessions-per-ns", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--profile", default="memray")
    parser.add_argument("--kubectl-sessions", type=int, default=200)
    parser.add_argument("--phases-of", type=Path, nargs="+", metavar="RUN_DIR",
                        help="only print (and save to --out) where the time of these earlier "
                        "runs went, e.g. runs of two checkouts to compare")  # fmt: skip
    args = parser.parse_args(argv)
    console = Console()
    if args.phases_of:
        return show_phases(console, args.phases_of, out=args.out)
    sessions = args.namespaces * args.sessions_per_ns
    batches = -(-args.namespaces // args.batch_size)
    runs = []
    for i in range(args.repeats):
        run_dir = REPO / "reports" / f"ttv-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{i}"
        timed = reproduce(
            ["--mem-limit", "128Mi", "--scenario", "terminal-sessions",
             "--namespaces", str(args.namespaces), "--sessions-per-ns", str(args.sessions_per_ns),
             "--batch-size", str(args.batch_size), "--profile", args.profile, "--cleanup"],
            kubeconfig=args.kubeconfig, run_dir=run_dir,
        )  # fmt: skip
        t0 = time.monotonic()
        cleanup = wait_background(run_dir, timeout=900) or {}
        runs.append(
            {
                "run_dir": str(run_dir.relative_to(REPO)),
                "seconds_to_verdict": round(timed.seconds, 1),
                "returncode": timed.returncode,
                "sessions": timed.summary.sessions_created,
                "outcome": timed.summary.run.meta.outcome.status,
                "settle_seconds_total": round(
                    float(timed.summary.frame["settle_seconds"].sum()), 1
                ),
                "load_seconds_total": round(timed.summary.batch_seconds_total, 1),
                "cleanup_seconds_after_verdict": round(time.monotonic() - t0, 1),
                "phases": {k: round(v, 1) for k, v in phases(run_dir).items()},
                "cleanup": cleanup.get("status"),
            }
        )
        console.print(runs[-1])
    rate = kubectl_rate(args.kubeconfig, args.kubectl_sessions)
    upstream = sessions / rate + batches * UPSTREAM_SLEEP
    ours = statistics.median(r["seconds_to_verdict"] for r in runs)
    table = Table(
        title=f"time to a verdict: {sessions:,} sessions in {batches} batches, profile {args.profile}"
    )
    table.add_column("way")
    table.add_column("seconds", justify="right")
    table.add_column("how")
    table.add_row("triage reproduce (median)", f"{ours:.0f}",
                  f"measured, {args.repeats} runs: {', '.join(str(r['seconds_to_verdict']) for r in runs)}")  # fmt: skip
    table.add_row("upstream kubectl loop", f"{upstream:.0f}",
                  f"extrapolated: {rate:.1f} sessions/s measured on {args.kubectl_sessions}, "
                  f"+ {batches} x {UPSTREAM_SLEEP:.0f} s sleeps")  # fmt: skip
    table.add_row("ratio", f"{upstream / ours:.1f}x", "")
    console.print(table)
    write_result(
        args.out, cluster=cluster_of(args.kubeconfig), data={
            "load": {"namespaces": args.namespaces, "sessions_per_ns": args.sessions_per_ns,
                     "batch_size": args.batch_size, "profile": args.profile},
            "runs": runs, "median_seconds_to_verdict": ours,
            "kubectl": {"sessions_measured": args.kubectl_sessions, "sessions_per_second": rate,
                        "extrapolated_seconds": upstream},
            "ratio": upstream / ours,
        },
    )  # fmt: skip
    console.print(f"wrote {args.out}")
    return 0


def show_phases(console: Console, run_dirs: list[Path], *, out: Path) -> int:
    console.width = max(console.width, 140)
    table = Table(title="where the time to a verdict went (seconds)")
    table.add_column("run")
    rows = {str(d): phases(d) for d in run_dirs}
    names = list(next(iter(rows.values())))
    for name in names:
        table.add_column(name.replace("_", " "), justify="right")
    for d, p in rows.items():
        table.add_row(d, *(f"{p[n]:.1f}" for n in names))
    console.print(table)
    write_result(out, cluster=None, data={"phases": rows})
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
