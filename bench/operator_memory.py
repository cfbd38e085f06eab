"""Operator memory on the real cluster: idle, per terminal session, per Running session.

Why a real cluster: what costs memory is what the operator receives (paginated LISTs of
realistic objects, watch streams, its own reconcile traffic), so synthetic in-process
numbers would flatter it. The loader writes sessions the way the platform does (create,
then status through the status subresource) with many threads over one connection pool.

Marginal cost per terminal session is the slope of steady-state RSS between two dataset
sizes (median of repeats); per Running session it is the slope between 500 and 1,000
Running sessions, each with what the operator makes for it (runner pod kept unschedulable
so nothing runs, ServiceAccount, Role, RoleBinding, token Secret) and its
namespace's prerequisite Secret: median of at least five repeats, because single slopes of
a few MiB move with the allocator. Every RSS sample is taken after a /metrics scrape, so
the memory the exposition costs is in the figures. `--compare-base DIR` runs the idle
operator of another checkout (the previous commit) interleaved with this one, so a change
in idle RSS is measured side by side in one run rather than across days.
Results: a table on stdout and bench/results/operator_memory.json.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import bench_parser, stop_process  # noqa: E402

from tests.processes import free_port, operator_command  # noqa: E402

RESULTS = REPO / "bench" / "results"
from _sessions import (  # noqa: E402
    PER_NS,
    RUNNER_IMAGE,
    Loader,
    _now,
)

# -- running the operator -----------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def _metric(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


@dataclass
class Run:
    mode: str
    ready_seconds: float  # process spawn -> /readyz 200 (all caches synced)
    cache_sync_seconds: float | None  # as logged by the operator (informers only)
    rss_after_sync: int
    rss_steady: int
    hwm: int
    sessions_cached: float
    namespaces_cached: float
    pods_cached: float


def run_operator(
    kubeconfig: str,
    *,
    mode: str = "lean",
    settle: float = 5.0,
    wait_queue: bool = False,
    timeout: float = 300,
    checkout: Path = REPO,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Start the operator of `checkout` (this one by default), measure it, stop it."""
    mport, hport = free_port(), free_port()
    env = {
        **os.environ,
        "AGENTIC_CACHE_MODE": mode,
        "AMBIENT_CODE_RUNNER_IMAGE": RUNNER_IMAGE,
        # `python -m` from the checkout imports its package, whatever the venv installed.
        "PYTHONPATH": str(checkout),
        **(extra_env or {}),
    }
    log_path = RESULTS / f".operator-{mport}.log.tmp"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            operator_command(kubeconfig, metrics_port=mport, health_port=hport),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(checkout),
        )
    try:
        while _get(f"http://127.0.0.1:{hport}/readyz")[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text())
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("operator not ready")
            time.sleep(0.02)
        ready = time.monotonic() - t0
        rss_after_sync = proc_status(proc.pid)["VmRSS"]
        if wait_queue:
            quiet = 0
            deadline = time.monotonic() + timeout
            while quiet < 3 and time.monotonic() < deadline:
                text = _get(f"http://127.0.0.1:{mport}/metrics")[1]
                depth = _metric(text, "workqueue_depth", '{name="agenticsession"}') or 0
                active = (
                    _metric(
                        text, "controller_runtime_active_workers", '{controller="agenticsession"}'
                    )
                    or 0
                )
                quiet = quiet + 1 if depth == 0 and active == 0 else 0
                time.sleep(1.0)
        time.sleep(settle)
        # Scrape first: what rendering /metrics leaves resident is part of the figure.
        text = _get(f"http://127.0.0.1:{mport}/metrics")[1]
        samples = [proc_status(proc.pid)["VmRSS"] for _ in range(3) if not time.sleep(0.5)]
        text = _get(f"http://127.0.0.1:{mport}/metrics")[1] or text
        st = proc_status(proc.pid)
        m = re.search(r"caches synced in ([0-9.]+)s", log_path.read_text())
        return Run(
            mode=mode,
            ready_seconds=round(ready, 3),
            cache_sync_seconds=float(m.group(1)) if m else None,
            rss_after_sync=rss_after_sync,
            rss_steady=int(statistics.median(samples)),
            hwm=st["VmHWM"],
            sessions_cached=_metric(
                text, "agentic_operator_cache_objects", '{informer="agenticsessions"}'
            )
            or 0,
            namespaces_cached=_metric(
                text, "agentic_operator_cache_objects", '{informer="namespaces"}'
            )
            or 0,
            pods_cached=_metric(text, "agentic_operator_cache_objects", '{informer="runner-pods"}')
            or 0,
        )
    finally:
        stop_process(proc)
        log_path.unlink(missing_ok=True)


def median_run(runs: list[Run]) -> dict[str, Any]:
    keys = (
        "ready_seconds",
        "rss_after_sync",
        "rss_steady",
        "hwm",
        "sessions_cached",
        "namespaces_cached",
        "pods_cached",
    )
    out: dict[str, Any] = {k: statistics.median(getattr(r, k) for r in runs) for k in keys}
    syncs = [r.cache_sync_seconds for r in runs if r.cache_sync_seconds is not None]
    out["cache_sync_seconds"] = statistics.median(syncs) if syncs else None
    out["runs"] = [asdict(r) for r in runs]
    return out


def rss_slopes(by_size: dict[int, dict[str, Any]]) -> list[float]:
    """Steady RSS per session between the smallest and the largest dataset, one per repeat
    (the i-th run at one size against the i-th at the other)."""
    lo, hi = min(by_size), max(by_size)
    return [
        (b["rss_steady"] - a["rss_steady"]) / (hi - lo)
        for a, b in zip(by_size[lo]["runs"], by_size[hi]["runs"], strict=False)
    ]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, repeats=5)
    p.add_argument(
        "--sizes", default="5000,10000", help="terminal session counts (10 per namespace)"
    )
    p.add_argument(
        "--running",
        default="500,1000",
        help="Running session counts (with runner pods) added on top of the largest terminal set",
    )
    p.add_argument(
        "--compare-base",
        type=Path,
        default=None,
        help="another checkout (the previous commit) whose idle RSS is measured interleaved",
    )
    p.add_argument("--threads", type=int, default=24)
    p.add_argument("--mode", choices=("lean", "full"), default="lean")
    p.add_argument("--keep", action="store_true", help="leave the bench data in the cluster")
    p.add_argument(
        "--purge", action="store_true", help="also delete the bench namespaces at the end"
    )
    p.add_argument("--name", default="operator_memory")
    args = p.parse_args(argv)

    loader = Loader.connect(args.kubeconfig, threads=args.threads)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict[str, Any] = {
        "benchmark": args.name,
        "mode": args.mode,
        "per_namespace": PER_NS,
        "started_at": _now(),
    }
    try:
        loader.cleanup(("bench-t-", "bench-r-"))
        print("idle (no bench data) ...", flush=True)
        idle: list[Run] = []
        base_idle: list[Run] = []
        for _ in range(args.repeats):
            # Interleaved, so both see the same cluster and machine load.
            idle.append(run_operator(args.kubeconfig, mode=args.mode))
            if args.compare_base is not None:
                base_idle.append(
                    run_operator(args.kubeconfig, mode=args.mode, checkout=args.compare_base)
                )
        result["idle"] = median_run(idle)
        if base_idle:
            result["idle_base"] = median_run(base_idle)
            result["idle_base"]["checkout"] = str(args.compare_base)
            result["idle_delta_bytes"] = (
                result["idle"]["rss_steady"] - result["idle_base"]["rss_steady"]
            )

        terminal: dict[int, dict[str, Any]] = {}
        for size in sizes:
            t0 = time.monotonic()
            ns = loader.namespaces("bench-t", size // PER_NS)
            wrote = loader.sessions(ns, per_ns=PER_NS, phase="Completed")
            loader.manage(ns)
            print(
                f"{size} terminal sessions in {len(ns)} namespaces ready ({wrote} written, {time.monotonic() - t0:.0f}s)",
                flush=True,
            )
            terminal[size] = median_run(
                [run_operator(args.kubeconfig, mode=args.mode) for _ in range(args.repeats)]
            )
        result["terminal"] = {str(k): v for k, v in terminal.items()}
        if len(sizes) >= 2:
            slopes = rss_slopes(terminal)
            result["marginal_bytes_per_terminal_session"] = statistics.median(slopes)
            result["marginal_slopes"] = slopes

        running_sizes = sorted(int(x) for x in args.running.split(",") if x and int(x) > 0)
        running: dict[int, dict[str, Any]] = {}
        for count in running_sizes:
            t0 = time.monotonic()
            ns = loader.namespaces("bench-r", max(1, count // PER_NS))
            loader.runner_secrets(ns)
            loader.sessions(ns, per_ns=PER_NS, phase="Running", with_pods=True)
            loader.manage(ns)
            print(
                f"{count} Running sessions with runner pods ready ({time.monotonic() - t0:.0f}s)",
                flush=True,
            )
            running[count] = median_run(
                [
                    run_operator(args.kubeconfig, mode=args.mode, wait_queue=True)
                    for _ in range(args.repeats)
                ]
            )
        if running:
            result["running"] = {str(k): v for k, v in running.items()}
        if len(running_sizes) >= 2:
            slopes = rss_slopes(running)
            result["marginal_bytes_per_running_session"] = statistics.median(slopes)
            result["marginal_running_slopes"] = slopes
    finally:
        if not args.keep:
            print("cleaning up bench data ...", flush=True)
            loader.cleanup(("bench-t-", "bench-r-"), purge=args.purge)
        loader.kube.close()

    result["finished_at"] = _now()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [("idle", result["idle"])]
    if "idle_base" in result:
        rows.append(("idle (base checkout)", result["idle_base"]))
    rows += [(f"{k} terminal", v) for k, v in result.get("terminal", {}).items()]
    rows += [(f"+{k} Running", v) for k, v in result.get("running", {}).items()]
    print(
        f"\n{'dataset':<22}{'sessions':>10}{'ready s':>9}{'RSS sync':>12}{'RSS steady':>12}{'peak':>12}{'peak/steady':>12}"
    )
    for label, r in rows:
        print(
            f"{label:<22}{int(r['sessions_cached']):>10}{r['ready_seconds']:>9.2f}{mib(r['rss_after_sync']):>12}"
            f"{mib(r['rss_steady']):>12}{mib(r['hwm']):>12}{r['hwm'] / r['rss_steady']:>12.2f}"
        )
    if "marginal_bytes_per_terminal_session" in result:
        print(
            f"marginal per terminal session: {result['marginal_bytes_per_terminal_session']:.0f} B (budget 300 B)"
        )
    if "marginal_bytes_per_running_session" in result:
        kib = ", ".join(f"{x / 1024:.1f}" for x in result["marginal_running_slopes"])
        print(
            f"marginal per Running session:  {result['marginal_bytes_per_running_session']:.0f} B"
            f" (budget 4096 B; slopes {kib} KiB)"
        )
    if "idle_delta_bytes" in result:
        print(f"idle RSS, this checkout minus base: {result['idle_delta_bytes'] / 2**20:+.2f} MiB")
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
