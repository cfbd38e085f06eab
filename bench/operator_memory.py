"""Operator memory on the real cluster: idle, per terminal session, per Running session.

Why a real cluster: what costs memory is what the operator receives (paginated LISTs of
realistic objects, watch streams, its own reconcile traffic), so synthetic in-process
numbers would flatter it. The loader writes sessions the way the platform does (create,
then status through the status subresource) with many threads over one connection pool.

Marginal cost per terminal session is the slope of steady-state RSS between two dataset
sizes (median of repeats); per Running session it is the RSS difference with and without
1,000 Running sessions (each with its runner pod, kept unschedulable so nothing runs).
Results: a table on stdout and bench/results/operator_memory.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _cluster import add_kubeconfig_option, stop_process  # noqa: E402

from agentic_operator._kube import ApiError, KubeClient, load_config  # noqa: E402

RESULTS = REPO / "bench" / "results"
GROUP = "/apis/vteam.ambient-code/v1alpha1"
BENCH_LABEL = "agentic-bench/owned"
MANAGED = "ambient-code.io/managed"
RUNNER_IMAGE = "localhost/ambient-runner:dev"
PER_NS = 10


# -- loader --------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def session_body(ns: str, name: str) -> dict[str, Any]:
    """About 3 KB of JSON once stored, like a real session (prompt, repos, settings)."""
    return {
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "AgenticSession",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {BENCH_LABEL: "true"},
            "annotations": {"ambient-code.io/created-by": "bench-user@example.com"},
        },
        "spec": {
            "initialPrompt": (
                "Refactor the payment module and add tests for the edge cases. " * 24
            )[:1500],
            "displayName": f"Bench session {name}",
            "repos": [{"url": f"https://github.com/example/{name}.git", "branch": "main"}],
            "llmSettings": {"model": "claude-sonnet-4-5"},
            "userContext": {"userId": "u-123", "displayName": "Bench User", "groups": ["devs"]},
            "environmentVariables": {"RUNNER_TYPE": "claude-agent-sdk", "LOG_LEVEL": "info"},
        },
    }


def _conditions(ready: bool, reason: str) -> list[dict[str, Any]]:
    now = _now()
    types = ["SecretsReady", "PodCreated", "PodScheduled", "RunnerStarted", "Reconciled", "Ready"]
    return [
        {
            "type": t,
            "status": "True" if (ready or t != "Ready") else "False",
            "reason": reason if t == "Ready" else "Done",
            "message": f"{t} message for the benchmark",
            "lastTransitionTime": now,
            "observedGeneration": 1,
        }
        for t in types
    ]


def status_for(phase: str, generation: int) -> dict[str, Any]:
    now = _now()
    st: dict[str, Any] = {
        "phase": phase,
        "startTime": now,
        "observedGeneration": generation,
        "conditions": _conditions(phase == "Running", phase),
        "sdkSessionId": "5f0c1c8e-bench-sdk-session",
    }
    if phase != "Running":
        st["completionTime"] = now
    return st


class Loader:
    def __init__(self, kube: KubeClient, *, threads: int = 24) -> None:
        self.kube = kube
        self.threads = threads

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads)

    def namespaces(self, prefix: str, count: int) -> list[str]:
        """Create (or reuse) namespaces, not yet managed: see `manage`."""
        names = [f"{prefix}-{i:04d}" for i in range(count)]

        def ensure(ns: str) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {BENCH_LABEL: "true"}},
            }
            try:
                self.kube.create("/api/v1/namespaces", body)
            except ApiError as e:
                if not e.already_exists:
                    raise
            # A ready ProjectSettings, as a cluster the operator has run on before has.
            ps = {
                "apiVersion": "vteam.ambient-code/v1alpha1",
                "kind": "ProjectSettings",
                "metadata": {
                    "name": "projectsettings",
                    "namespace": ns,
                    "labels": {MANAGED: "true"},
                },
                "spec": {"groupAccess": []},
            }
            try:
                stored = self.kube.create(f"{GROUP}/namespaces/{ns}/projectsettings", ps)
                stored["status"] = {
                    "groupBindingsCreated": 0,
                    "scheduledSessionRBACReady": True,
                    "limitRangeReady": True,
                }
                self.kube.replace(
                    f"{GROUP}/namespaces/{ns}/projectsettings/projectsettings/status", stored
                )
            except ApiError as e:
                if not e.already_exists:
                    raise

        with self._pool() as pool:
            list(pool.map(ensure, names))
        return names

    def manage(self, namespaces: list[str], *, managed: bool = True) -> None:
        """Label the namespaces managed only once their sessions are in their final state.

        Any operator running in the cluster (ours under test or another one) then sees
        finished sessions, never a fresh Pending one it would start a runner pod for.
        """
        label = {MANAGED: "true" if managed else None}

        def patch(ns: str) -> None:
            self.kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": label}})

        with self._pool() as pool:
            list(pool.map(patch, namespaces))

    def sessions(
        self, namespaces: list[str], *, per_ns: int, phase: str, with_pods: bool = False
    ) -> int:
        jobs = [(ns, f"s-{i:03d}") for ns in namespaces for i in range(per_ns)]

        def ensure(job: tuple[str, str]) -> int:
            ns, name = job
            path = f"{GROUP}/namespaces/{ns}/agenticsessions"
            try:
                obj = self.kube.create(path, session_body(ns, name))
            except ApiError as e:
                if not e.already_exists:
                    raise
                obj = self.kube.get(f"{path}/{name}")
                if (obj.get("status") or {}).get("phase") == phase:
                    if with_pods:
                        self._pod(ns, name, obj)
                    return 0
            for _ in range(10):
                obj["status"] = status_for(phase, int(obj["metadata"].get("generation") or 1))
                try:
                    self.kube.replace(f"{path}/{name}/status", obj)
                    break
                except ApiError as e:
                    if e.status != 409:
                        raise
                    obj = self.kube.get(f"{path}/{name}")
            if with_pods:
                self._pod(ns, name, obj)
            return 1

        with self._pool() as pool:
            return sum(pool.map(ensure, jobs))

    def _pod(self, ns: str, name: str, session: dict[str, Any]) -> None:
        # A real runner pod object that can never be scheduled: cached and reconciled like
        # any runner pod, without a thousand containers on the benchmark machine.
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-runner",
                "namespace": ns,
                "labels": {
                    "app": "ambient-code-runner",
                    "agentic-session": name,
                    BENCH_LABEL: "true",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "vteam.ambient-code/v1alpha1",
                        "kind": "AgenticSession",
                        "name": name,
                        "uid": session["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"agentic-bench/never": "true"},
                "containers": [{"name": "ambient-code-runner", "image": RUNNER_IMAGE}],
            },
        }
        try:
            self.kube.create(f"/api/v1/namespaces/{ns}/pods", body)
        except ApiError as e:
            if not e.already_exists:
                raise

    def cleanup(self, prefixes: tuple[str, ...], *, purge: bool = False) -> int:
        """Delete bench objects and unmanage the namespaces (kept for reuse unless `purge`).

        Emptied, unlabelled namespaces cost other operators nothing; keeping them lets the
        next run reuse them instead of waiting for namespace deletion.
        """
        listing = self.kube.list("/api/v1/namespaces", params={"labelSelector": BENCH_LABEL})
        names = [
            n["metadata"]["name"]
            for n in listing.get("items", [])
            if n["metadata"]["name"].startswith(prefixes)
        ]

        def wipe(ns: str) -> None:
            for path in (
                f"{GROUP}/namespaces/{ns}/agenticsessions",
                f"{GROUP}/namespaces/{ns}/projectsettings",
                f"/api/v1/namespaces/{ns}/pods",
            ):
                with contextlib.suppress(ApiError):
                    self.kube.delete(path, params={"gracePeriodSeconds": "0"})
            try:
                self.kube.patch(
                    f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {MANAGED: None}}}
                )
                if purge:
                    self.kube.delete(f"/api/v1/namespaces/{ns}")
            except ApiError:
                pass

        with self._pool() as pool:
            list(pool.map(wipe, names))
        return len(names)


# -- running the operator -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
) -> Run:
    mport, hport = free_port(), free_port()
    env = {**os.environ, "AGENTIC_CACHE_MODE": mode, "AMBIENT_CODE_RUNNER_IMAGE": RUNNER_IMAGE}
    log_path = RESULTS / f".operator-{mport}.log.tmp"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentic_operator",
                "--kubeconfig",
                kubeconfig,
                "--metrics-bind-address",
                f"127.0.0.1:{mport}",
                "--health-probe-bind-address",
                f"127.0.0.1:{hport}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
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
        samples = [proc_status(proc.pid)["VmRSS"] for _ in range(3) if not time.sleep(0.5)]
        st = proc_status(proc.pid)
        text = _get(f"http://127.0.0.1:{mport}/metrics")[1]
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


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_kubeconfig_option(p)
    p.add_argument(
        "--sizes", default="5000,10000", help="terminal session counts (10 per namespace)"
    )
    p.add_argument(
        "--running",
        default="500,1000",
        help="Running session counts (with runner pods) added on top of the largest terminal set",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=24)
    p.add_argument("--mode", choices=("lean", "full"), default="lean")
    p.add_argument("--keep", action="store_true", help="leave the bench data in the cluster")
    p.add_argument(
        "--purge", action="store_true", help="also delete the bench namespaces at the end"
    )
    p.add_argument("--name", default="operator_memory")
    args = p.parse_args(argv)

    kube = KubeClient(load_config(kubeconfig=args.kubeconfig), max_connections=args.threads + 4)
    loader = Loader(kube, threads=args.threads)
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
        idle = [run_operator(args.kubeconfig, mode=args.mode) for _ in range(args.repeats)]
        result["idle"] = median_run(idle)

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
            lo, hi = sizes[0], sizes[-1]
            slopes = [
                (b["rss_steady"] - a["rss_steady"]) / (hi - lo)
                for a, b in zip(terminal[lo]["runs"], terminal[hi]["runs"], strict=False)
            ]
            result["marginal_bytes_per_terminal_session"] = statistics.median(slopes)
            result["marginal_slopes"] = slopes

        running_sizes = sorted(int(x) for x in args.running.split(",") if x and int(x) > 0)
        running: dict[int, dict[str, Any]] = {}
        for count in running_sizes:
            t0 = time.monotonic()
            ns = loader.namespaces("bench-r", max(1, count // PER_NS))
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
            lo, hi = running_sizes[0], running_sizes[-1]
            slopes = [
                (b["rss_steady"] - a["rss_steady"]) / (hi - lo)
                for a, b in zip(running[lo]["runs"], running[hi]["runs"], strict=False)
            ]
            result["marginal_bytes_per_running_session"] = statistics.median(slopes)
            result["marginal_running_slopes"] = slopes
    finally:
        if not args.keep:
            print("cleaning up bench data ...", flush=True)
            loader.cleanup(("bench-t-", "bench-r-"), purge=args.purge)
        kube.close()

    result["finished_at"] = _now()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [("idle", result["idle"])]
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
        print(
            f"marginal per Running session:  {result['marginal_bytes_per_running_session']:.0f} B (budget 4096 B)"
        )
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
