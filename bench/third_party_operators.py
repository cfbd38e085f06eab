"""Memory of the third-party test operators on the node: idle, per session, and where they die.

triage is tested against operators that stand for its users' (tests/operators: kopf, the
`kubernetes` client caching whole objects, a client-go informer). Their figures say what a
run against them should look like: this deploys one (tests/operators/deploy.py) in its own
namespace with a memory limit, scoped to this run's namespaces only, reads the kubelet's stats
summary at idle (when it holds no session), then creates production-shaped Completed sessions in batches with triage's
loader, waits until the operator has them all cached, and samples again after each batch until
the container is OOMKilled or the session budget is spent.

    .venv/bin/python bench/third_party_operators.py --operator go-informer [--mem-limit 128Mi]
        [--batch 500] [--max-sessions 6000] [--pprof-dir DIR]

With --pprof-dir (go-informer only) the operator serves pprof and a heap profile is saved
after every batch (heap-NNNN.pb.gz, as the upstream reproducer names them). Results are
kept per operator (and limit, if not 128Mi) in bench/results/third_party_operators.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, write_result  # noqa: E402

from agentic_operator.resources import NAMESPACES  # noqa: E402
from tests.operators.deploy import OPERATORS, Deployed, deploy, undeploy  # noqa: E402
from triage import bodies, load  # noqa: E402
from triage.cleanup import cleanup  # noqa: E402
from triage.cluster import Cluster, connect  # noqa: E402
from triage.sampling import Observation, Sampler  # noqa: E402
from triage.scenario import BatchPlan, NamespacePlan  # noqa: E402
from triage.target import Target  # noqa: E402

RESULTS = REPO / "bench" / "results" / "third_party_operators.json"
MI = 1024 * 1024


def cached(op: Deployed) -> int:
    """How many sessions the operator says it holds (-1 while it does not answer)."""
    try:
        h = op.health(timeout=3)
    except OSError:
        return -1
    if op.name == "kopf-sessions":
        return int(h.get("sessions", {}).get("tracked", -1))
    return int(h.get("sessions", -1))


def heap_profile(op: Deployed, path: Path) -> None:
    url = f"http://127.0.0.1:{op.ports['pprof']}/debug/pprof/heap"
    with urllib.request.urlopen(url, timeout=30) as r:
        path.write_bytes(r.read())


def row(sessions: int, s: Observation, seconds: float) -> dict[str, Any]:
    return {
        "sessions": sessions,
        "working_set_bytes": s.memory.working_set_bytes,
        "rss_bytes": s.memory.rss_bytes,
        "restarts": s.state.restart_count,
        "oom_killed": s.state.oom_killed or s.state.oom_count > 0,
        "state": s.state.state,
        "catch_up_seconds": round(seconds, 1),
    }


def slope(rows: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares bytes per session over the rows before any OOM."""
    pts = [(r["sessions"], r[key]) for r in rows if not r["oom_killed"] and r[key]]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def measure(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    home = f"tpo-{args.operator}-{secrets.token_hex(2)}"
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-tpo-{secrets.token_hex(3)}"
    suffix = run_id.rsplit("-", 1)[-1]
    cluster.client.create(NAMESPACES.path(), {"metadata": {"name": home}})
    env = {"ENABLE_PPROF": "true"} if args.pprof_dir else {}
    # kopf takes name globs; the others take this run's label, so that they neither list nor
    # cache the other namespaces of a shared cluster.
    scope = (
        {"globs": f"oom-repro-{suffix}-*"}
        if args.operator == "kopf-sessions"
        else {"selector": f"{bodies.RUN_ID_LABEL}={run_id}"}
    )
    op = deploy(args.operator, home, memory_limit=args.mem_limit, env=env, **scope)
    rows: list[dict[str, Any]] = []
    try:
        with Sampler(cluster, Target(home, op.name, op.name)) as sampler:
            time.sleep(args.settle)
            idle = [sampler.sample(fresh_after=time.time()) for _ in range(3)]
            rows.append(row(0, idle[-1], 0))
            print(
                f"idle: ws {[s.memory.working_set_bytes for s in idle]} "
                f"rss {[s.memory.rss_bytes for s in idle]}"
            )
            total, index, batch_no = 0, 0, 0
            if any(s.state.restart_count or s.state.state != "running" for s in idle):
                print(f"{op.name} restarted before any session: its idle is above the limit")
                rows[0].update(oom_killed=True, restarts=max(s.state.restart_count for s in idle))
                total = args.max_sessions  # nothing to load
            elif args.pprof_dir:
                args.pprof_dir.mkdir(parents=True, exist_ok=True)
                heap_profile(op, args.pprof_dir / "heap-0000.pb.gz")
            with load.Loader(cluster, run_id=run_id, concurrency=32) as loader:
                while total < args.max_sessions:
                    batch_no += 1
                    per_ns = args.sessions_per_ns
                    count = args.batch // per_ns
                    plans = tuple(
                        NamespacePlan(index=index + i, sessions=per_ns, managed=False)
                        for i in range(count)
                    )
                    index += count
                    t0 = time.monotonic()
                    result = loader.run_batch(BatchPlan(number=batch_no, namespaces=plans))
                    total += result.sessions
                    # Until the operator holds them all (or dies trying).
                    deadline = time.monotonic() + args.catch_up
                    while time.monotonic() < deadline and cached(op) < total:
                        time.sleep(0.5)
                    caught = time.monotonic() - t0
                    time.sleep(args.settle)
                    s = sampler.sample(fresh_after=time.time())
                    r = row(total, s, caught)
                    rows.append(r)
                    print(
                        f"{total:6d} sessions ({result.rate:.0f}/s): ws "
                        f"{(s.memory.working_set_bytes or 0) / MI:6.1f} MiB "
                        f"rss {(s.memory.rss_bytes or 0) / MI:6.1f} MiB state {s.state.state} "
                        f"restarts {s.state.restart_count} cached {cached(op)}"
                    )
                    if args.pprof_dir and not r["oom_killed"]:
                        heap_profile(op, args.pprof_dir / f"heap-{batch_no:04d}.pb.gz")
                    if r["oom_killed"] or s.state.restart_count:
                        break
    finally:
        undeploy(op)
        cleanup(cluster, run_id=run_id, timeout=300)
        cluster.client.delete_if_present(NAMESPACES.path(name=home), grace_seconds=0)
    died = next((r["sessions"] for r in rows if r["oom_killed"] or r["restarts"]), None)
    if died == 0:  # crash-looping at idle: its "idle" figures are a restarting container's
        rows[0].update(working_set_bytes=None, rss_bytes=None)
    return {
        "mem_limit": args.mem_limit,
        "idle_working_set_bytes": rows[0]["working_set_bytes"],
        "idle_rss_bytes": rows[0]["rss_bytes"],
        "bytes_per_session_rss": slope(rows, "rss_bytes"),
        "bytes_per_session_working_set": slope(rows, "working_set_bytes"),
        "oom_killed_at_sessions": died,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS)
    parser.add_argument("--operator", choices=OPERATORS, required=True)
    parser.add_argument("--mem-limit", default="128Mi")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sessions-per-ns", type=int, default=50)
    parser.add_argument("--max-sessions", type=int, default=6000)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--catch-up", type=float, default=120.0)
    parser.add_argument("--pprof-dir", type=Path)
    args = parser.parse_args(argv)
    if args.pprof_dir and args.operator != "go-informer":
        parser.error("--pprof-dir needs --operator go-informer")

    cluster = connect(kubeconfig=args.kubeconfig, context=None)
    result = measure(cluster, args)
    # One entry per operator at 128Mi; other limits are kept beside it.
    key = args.operator if args.mem_limit == "128Mi" else f"{args.operator}@{args.mem_limit}"
    previous = json.loads(args.out.read_text())["operators"] if args.out.exists() else {}
    write_result(
        args.out,
        {"operators": {**previous, key: result}},
        cluster=(cluster.context, cluster.server),
    )
    per = result["bytes_per_session_rss"]

    def mib(n: int | None) -> str:
        return "-" if n is None else f"{n / MI:.1f} MiB"

    print(
        f"{args.operator}: idle ws {mib(result['idle_working_set_bytes'])}, "
        f"rss {mib(result['idle_rss_bytes'])}; "
        f"{'-' if per is None else f'{per / 1024:.1f} KiB'}/session (rss); "
        f"OOMKilled at {result['oom_killed_at_sessions']} sessions ({args.mem_limit})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
