"""Session creation throughput: the upstream kubectl loop against triage's loader, one run.

The upstream reproducer created each session with one `kubectl apply` and moved it to
Completed with one `kubectl patch` of the status: a process, a kubeconfig parse and a TLS
handshake per request. Measuring both ways in the same run, on the same cluster, under the
same background load, is the only comparison that means anything on a shared machine; the
loader's number includes creating and labelling its namespaces, the kubectl loop's does not.
The loader runs twice per repeat, once with each way of writing the status (a PUT of the
created object, its default, and the merge patch the upstream script used), so the saving
of the PUT is measured side by side too; a third loader run creates minimal sessions (a
few hundred bytes, the `upstream-minimal` scenario), which shows what the loader does when
the objects are cheap for the apiserver.

    .venv/bin/python bench/load_throughput.py [--kubectl-sessions 30] [--loader-sessions 2000]

Prints a table and writes bench/results/load_throughput.json.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, write_result  # noqa: E402

from triage import load  # noqa: E402
from triage.cluster import Cluster, connect  # noqa: E402
from triage.scenario import SessionShape, get  # noqa: E402

RESULTS = REPO / "bench" / "results" / "load_throughput.json"
STATE = Path(os.environ.get("TRIAGE_CLUSTER_STATE", "/var/lib/triage-local"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cluster_pids() -> dict[str, int]:
    """The local cluster's daemons by name, from the PID files `cluster/lib.sh` writes."""
    out: dict[str, int] = {}
    for f in sorted((STATE / "pids").glob("*.pid")):
        try:
            out[f.stem] = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
    out["loader (this process)"] = os.getpid()
    # The operator runs in a pod, so it has no PID file; found by its command line for
    # reading its CPU time only.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"-m agentic_operator" in cmdline or b"bin/agentic-operator" in cmdline:
                out["agentic-operator (pod)"] = int(proc.name)
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each process (children excluded), from /proc/<pid>/stat."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


@dataclass(frozen=True)
class Way:
    """One way of creating sessions that the benchmark measures."""

    label: str
    tool: Literal["kubectl", "loader"]
    shape: SessionShape = "production"
    status_write: load.StatusWrite = "put"


#: In table order; "loader" over "kubectl" is the ratio the issue's target is about.
WAYS: dict[str, Way] = {
    "kubectl": Way("kubectl apply + patch (upstream)", "kubectl"),
    "loader": Way("triage loader, status PUT (concurrency {concurrency})", "loader"),
    "loader-patch": Way("triage loader, status merge patch", "loader", status_write="patch"),
    "kubectl-minimal": Way("kubectl apply + patch, minimal sessions", "kubectl", "minimal"),
    "loader-minimal": Way("triage loader, minimal sessions", "loader", "minimal"),
}


def _run_id(tag: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-bench{tag}-{secrets.token_hex(2)}"


def _kubectl(kubeconfig: str, *args: str, stdin: bytes | None = None) -> None:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.decode().strip()}")


def status_patch_args(kubeconfig: str, namespace: str, name: str, patch: str) -> list[str]:
    """`kubectl patch --subresource=status` (kubectl >= 1.24), which a 1.20 server accepts."""
    return [
        "-n", namespace, "patch", "agenticsession", name,
        "--subresource=status", "--type=merge", "-p", patch,
    ]  # fmt: skip


def kubectl_way(
    cluster: Cluster, kubeconfig: str, sessions: int, *, session_shape: SessionShape = "production"
) -> dict[str, Any]:
    """The upstream loop: apply, then patch the status, one session at a time."""
    run_id = _run_id("k")
    ns = load.namespace_name(run_id, 0)
    cluster.client.create(
        "/api/v1/namespaces", json.loads(load.namespace_body(ns, run_id=run_id, managed=False))
    )
    doc = load.status_doc("Completed", shape=session_shape)
    status = json.dumps({"status": doc}, separators=(",", ":"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for j in range(sessions):
                path = Path(tmp) / f"s{j}.json"
                path.write_bytes(
                    load.session_body(
                        namespace=ns,
                        name=load.session_name(0, j),
                        run_id=run_id,
                        n=j,
                        shape=session_shape,
                    )
                )
                files.append(path)
            t0 = time.monotonic()
            for j, path in enumerate(files):
                _kubectl(kubeconfig, "apply", "-f", str(path))
                _kubectl(
                    kubeconfig, *status_patch_args(kubeconfig, ns, load.session_name(0, j), status)
                )
            seconds = time.monotonic() - t0
    finally:
        load.cleanup(cluster, run_id=run_id, timeout=120)
    return {"sessions": sessions, "seconds": seconds, "rate": sessions / seconds}


def loader_way(
    cluster: Cluster,
    sessions: int,
    *,
    concurrency: int,
    status_write: load.StatusWrite = "put",
    session_shape: SessionShape = "production",
    per_ns: int = 100,
) -> dict[str, Any]:
    """triage's loader: namespaces + sessions + status writes over one pool."""
    run_id = _run_id("l")
    namespaces = max(sessions // per_ns, 1)
    scenario = get("terminal-sessions").sized(
        namespaces=namespaces, sessions_per_ns=per_ns, batch_size=namespaces
    )
    pids = cluster_pids()
    try:
        with load.Loader(
            cluster,
            run_id=run_id,
            concurrency=concurrency,
            session_phase="Completed",
            status_write=status_write,
            session_shape=session_shape,
        ) as loader:
            before = cpu_seconds(pids)
            result = loader.run_batch(scenario.plan()[0])
            after = cpu_seconds(pids)
    finally:
        load.cleanup(cluster, run_id=run_id, timeout=300)
    # Where the CPU went while the loader ran: which process bounds the rate.
    cpu_ms = {
        name: 1000 * (after[name] - before[name]) / max(result.sessions, 1)
        for name in before
        if name in after
    }
    return {
        "sessions": result.sessions,
        "seconds": result.seconds,
        "rate": result.rate,
        "cpu_ms_per_session": cpu_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS, repeats=3)
    parser.add_argument("--kubectl-sessions", type=int, default=30)
    parser.add_argument("--loader-sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)

    console = Console()
    cluster = connect(kubeconfig=args.kubeconfig, context=None)
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    loader_ways = [way for way, w in WAYS.items() if w.tool == "loader"]
    for i in range(args.repeats):
        # Interleaved, so a burst of background load hits every way alike; the loader's ways
        # rotate each repeat, so none always runs right after a cleanup.
        turn = i % len(loader_ways)
        order = [w for w in WAYS if w not in loader_ways] + loader_ways[turn:] + loader_ways[:turn]
        for way in order:
            w = WAYS[way]
            runs[way].append(
                kubectl_way(cluster, args.kubeconfig, args.kubectl_sessions, session_shape=w.shape)
                if w.tool == "kubectl"
                else loader_way(
                    cluster,
                    args.loader_sessions,
                    concurrency=args.concurrency,
                    status_write=w.status_write,
                    session_shape=w.shape,
                )
            )
        console.print(
            f"repeat {i + 1}: " + ", ".join(f"{way} {runs[way][-1]['rate']:.1f}/s" for way in WAYS),
            highlight=False,
        )
    median = {k: statistics.median(r["rate"] for r in v) for k, v in runs.items()}
    ratio = median["loader"] / median["kubectl"]
    ratio_minimal = median["loader-minimal"] / median["kubectl-minimal"]

    table = Table(title="AgenticSession creation incl. status write (sessions/s)")
    table.add_column("way")
    table.add_column("sessions per repeat", justify="right")
    for i in range(args.repeats):
        table.add_column(f"#{i + 1}", justify="right")
    table.add_column("median", justify="right")
    for way, w in WAYS.items():
        label = w.label.format(concurrency=args.concurrency)
        n = args.kubectl_sessions if w.tool == "kubectl" else args.loader_sessions
        table.add_row(label, str(n), *(f"{r['rate']:.1f}" for r in runs[way]), f"{median[way]:.1f}")
    table.caption = (
        f"ratio {ratio:.0f}x production-shaped, {ratio_minimal:.0f}x minimal (target >= 100x); "
        "loader target >= 500/s"
    )
    console.print(table)

    def cpu_medians(way: str) -> dict[str, float]:
        names = sorted({n for r in runs[way] for n in r["cpu_ms_per_session"]})
        return {
            n: statistics.median(r["cpu_ms_per_session"].get(n, 0.0) for r in runs[way])
            for n in names
        }

    cpu_median = cpu_medians("loader")
    cpu_median_patch = cpu_medians("loader-patch")
    cpu_median_minimal = cpu_medians("loader-minimal")
    cpu_table = Table(title="CPU per session while the loader ran (ms, median of repeats)")
    cpu_table.add_column("process")
    cpu_table.add_column("status PUT", justify="right")
    cpu_table.add_column("merge patch", justify="right")
    cpu_table.add_column("minimal", justify="right")
    for name, ms in sorted(cpu_median.items(), key=lambda kv: -kv[1]):
        cpu_table.add_row(
            name,
            f"{ms:.2f}",
            f"{cpu_median_patch.get(name, 0.0):.2f}",
            f"{cpu_median_minimal.get(name, 0.0):.2f}",
        )
    total_ms = sum(cpu_median.values())
    cpu_table.caption = (
        f"total {total_ms:.1f} ms/session: at most {1000 * (os.cpu_count() or 1) / total_ms:.0f}"
        " sessions/s on this machine's cores if nothing else ran"
        if total_ms
        else "no CPU accounting (cluster PID files not found)"
    )
    console.print(cpu_table)

    write_result(
        args.out,
        {
            "kubectl_sessions": args.kubectl_sessions,
            "loader_sessions": args.loader_sessions,
            "concurrency": args.concurrency,
            "runs": runs,
            "median_sessions_per_second": median,
            "ratio": ratio,
            "ratio_minimal": ratio_minimal,
            "cpu_ms_per_session_median": cpu_median,
            "cpu_ms_per_session_median_patch": cpu_median_patch,
            "cpu_ms_per_session_median_minimal": cpu_median_minimal,
            "targets": {"ratio": 100, "loader_sessions_per_second": 500},
        },
        cluster=(cluster.context, cluster.server),
    )
    console.print(f"wrote {args.out}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
