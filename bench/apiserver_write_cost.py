"""What one write costs the local apiserver, by object: where the loader's ceiling comes from.

`load_throughput.py` shows the loader running at the machine's CPU ceiling, with
kube-apiserver taking most of it. This benchmark takes the loader's requests apart: it sends
N of one kind of write at a time over the loader's pool (concurrency 32) and reads each
cluster process's CPU time around them, for a tiny ConfigMap (the request path alone), a
minimal and a production-shaped AgenticSession create, and their status writes (PUT of the
created object, and the merge patch for the production shape).

    .venv/bin/python bench/apiserver_write_cost.py [--writes 2000] [--repeats 3]

Prints a table (median of repeats) and writes bench/results/apiserver_write_cost.json.
"""

from __future__ import annotations

import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, write_result  # noqa: E402
from load_throughput import cluster_pids, cpu_seconds  # noqa: E402

from triage import load  # noqa: E402
from triage.cluster import Cluster, connect  # noqa: E402
from triage.scenario import SessionShape  # noqa: E402

RESULTS = REPO / "bench" / "results" / "apiserver_write_cost.json"
CONCURRENCY = 32


def _check(status: int, data: bytes, what: str) -> bytes:
    if status not in (200, 201):
        raise RuntimeError(f"{what}: HTTP {status}: {data[:200]!r}")
    return data


def _timed(n: int, fn: Callable[[int], None], pids: dict[str, int]) -> dict[str, Any]:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        before = cpu_seconds(pids)
        t0 = time.monotonic()
        list(pool.map(fn, range(n)))
        seconds = time.monotonic() - t0
        after = cpu_seconds(pids)
    return {
        "writes_per_second": n / seconds,
        "cpu_ms_per_write": {k: 1000 * (after[k] - before[k]) / n for k in before if k in after},
    }


def one_repeat(cluster: Cluster, n: int) -> dict[str, dict[str, Any]]:
    """Every kind of write once, N of each, in a namespace of its own that is deleted after."""
    run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-benchw-{secrets.token_hex(2)}"
    ns = load.namespace_name(run_id, 0)
    cluster.client.send(
        "POST", "/api/v1/namespaces", body=load.namespace_body(ns, run_id=run_id, managed=False)
    )
    pids = cluster_pids()
    out: dict[str, dict[str, Any]] = {}
    try:

        def configmap(i: int) -> None:
            body = json.dumps({"metadata": {"name": f"c{i}"}, "data": {"k": "v"}}).encode()
            _check(
                *cluster.client.send("POST", f"/api/v1/namespaces/{ns}/configmaps", body=body),
                "configmap",
            )

        out["configmap create"] = _timed(n, configmap, pids)
        base = f"/apis/{load.GROUP_VERSION}/namespaces/{ns}/agenticsessions"
        # Each status write goes to sessions of its own that have just been created, as in
        # the loader: a status written a second time would be a larger object to begin with.
        ways: tuple[tuple[SessionShape, load.StatusWrite], ...] = (
            ("minimal", "put"),
            ("production", "put"),
            ("production", "patch"),
        )
        for shape, write in ways:
            created: dict[int, bytes] = {}
            prefix = f"{shape}-{write}"
            # The loader's own status write, so what is measured is what a run sends.
            writer = load.Loader(
                cluster,
                run_id=run_id,
                concurrency=CONCURRENCY,
                session_shape=shape,
                status_write=write,
            )

            def create(
                i: int,
                shape: SessionShape = shape,
                prefix: str = prefix,
                created: dict[int, bytes] = created,
            ) -> None:
                body = load.session_body(
                    namespace=ns, name=f"{prefix}-{i}", run_id=run_id, n=i, shape=shape
                )
                created[i] = _check(*cluster.client.send("POST", base, body=body), "session create")

            def write_status(
                i: int,
                prefix: str = prefix,
                created: dict[int, bytes] = created,
                writer: load.Loader = writer,
            ) -> None:
                writer._write_status(f"{base}/{prefix}-{i}/status", created[i], "Completed")

            with writer:
                if write == "put":
                    out[f"{shape} session create"] = _timed(n, create, pids)
                else:
                    _timed(n, create, pids)
                label = "PUT" if write == "put" else "merge patch"
                out[f"{shape} status {label}"] = _timed(n, write_status, pids)
    finally:
        load.cleanup(cluster, run_id=run_id, timeout=300)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS, repeats=3)
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args(argv)

    console = Console()
    cluster = connect(kubeconfig=args.kubeconfig, context=None)
    cluster.client.resize_pool(CONCURRENCY)
    repeats = []
    for i in range(args.repeats):
        repeats.append(one_repeat(cluster, args.writes))
        console.print(f"repeat {i + 1} done", highlight=False)

    kinds = list(repeats[0])
    median: dict[str, dict[str, float]] = {}
    for kind in kinds:
        median[kind] = {
            "writes_per_second": statistics.median(r[kind]["writes_per_second"] for r in repeats),
            "apiserver_ms": statistics.median(
                r[kind]["cpu_ms_per_write"].get("kube-apiserver", 0.0) for r in repeats
            ),
            "etcd_ms": statistics.median(
                r[kind]["cpu_ms_per_write"].get("etcd", 0.0) for r in repeats
            ),
            "client_ms": statistics.median(
                r[kind]["cpu_ms_per_write"].get("loader (this process)", 0.0) for r in repeats
            ),
        }

    table = Table(title=f"One write, by object (median of {args.repeats} x {args.writes} writes)")
    for col in ("write", "writes/s", "apiserver ms", "etcd ms", "client ms"):
        table.add_column(col, justify="left" if col == "write" else "right")
    for kind, m in median.items():
        table.add_row(
            kind,
            f"{m['writes_per_second']:.0f}",
            f"{m['apiserver_ms']:.2f}",
            f"{m['etcd_ms']:.2f}",
            f"{m['client_ms']:.2f}",
        )
    console.print(table)

    write_result(
        args.out,
        {
            "writes": args.writes,
            "concurrency": CONCURRENCY,
            "repeats": repeats,
            "median": median,
        },
        cluster=(cluster.context, cluster.server),
    )
    console.print(f"wrote {args.out}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
