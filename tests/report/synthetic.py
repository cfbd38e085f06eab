"""SYNTHETIC run directories, for rendering tests only.

These are not measurements. They are generated inputs written THROUGH the documented run
directory format (docs/architecture.md: run.json, samples.csv, latency.csv,
profiles/batch-NNNN/{memray.json,pyspy.txt}) with the column lists spelled out here rather
than imported from triage.report, so that a loader drifting away from the contract fails
these tests instead of agreeing with itself. Recorded real runs live in tests/data/runs/.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

MI = 1024 * 1024

# Copied from docs/architecture.md, in the documented order.
SAMPLES_HEADER = [
    "kind", "batch", "t_seconds", "timestamp", "sessions", "namespaces", "objects",
    "working_set_bytes", "rss_bytes", "metrics_api_bytes", "operator_rss_bytes",
    "restart_count", "oom_count", "oom_killed", "batch_seconds", "create_rate", "pod",
]  # fmt: skip
LATENCY_HEADER = [
    "session", "namespace", "created", "pod_created", "scheduled", "running", "ready", "waiting"
]  # fmt: skip


@dataclass(frozen=True)
class Synthetic:
    """Parameters of a synthetic run; defaults give an OOM around batch 7 at 128Mi."""

    scenario: str = "terminal-sessions"
    limit_mi: int = 128
    base_bytes: int = 40 * MI
    bytes_per_session: float = 26_000.0
    noise_bytes: float = 300_000.0
    batch_size: int = 500
    max_batches: int = 12
    post_oom_samples: int = 6
    #: Fraction of the pre-OOM heap the restarted operator reaches when it relists.
    restart_peak_fraction: float = 1.05
    latency_sessions: int = 0
    memray: bool = True
    pyspy: bool = True
    seed: int = 1
    run_suffix: str = "a1b2"


def write_run(root: Path, spec: Synthetic = Synthetic()) -> Path:
    """Write one synthetic run directory under `root` and return its path."""
    rng = random.Random(spec.seed)
    run_id = f"20240501-120000-{spec.scenario}-{spec.run_suffix}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    limit = spec.limit_mi * MI

    rows: list[dict[str, object]] = []
    t = 0.0
    restarts = ooms = 0
    oom_batch: int | None = None
    oom_sessions: int | None = None

    def row(kind: str, batch: int, sessions: int, ws: float, *, killed: bool = False,
            batch_seconds: float | None = None) -> None:  # fmt: skip
        rows.append({
            "kind": kind,
            "batch": batch,
            "t_seconds": f"{t:.2f}",
            "timestamp": f"2024-05-01T12:{int(t // 60):02d}:{int(t % 60):02d}Z",
            "sessions": sessions,
            "namespaces": max(1, sessions // 10),
            "objects": sessions * 3,
            "working_set_bytes": int(ws),
            "rss_bytes": int(ws * 0.93),
            "metrics_api_bytes": int(ws) if kind != "post-oom" else "",
            "operator_rss_bytes": "",
            "restart_count": restarts,
            "oom_count": ooms,
            "oom_killed": int(killed),
            "batch_seconds": "" if batch_seconds is None else f"{batch_seconds:.2f}",
            "create_rate": "" if batch_seconds is None else f"{spec.batch_size / batch_seconds:.2f}",
            "pod": f"agentic-operator-7d9f-{restarts}x",
        })  # fmt: skip

    row("baseline", 0, 0, spec.base_bytes)
    sessions = 0
    for batch in range(1, spec.max_batches + 1):
        sessions += spec.batch_size
        # Batches slow down as the heap grows: GC pressure, the pattern a reviewer looks for.
        seconds = 6.0 + 2.5 * batch + rng.uniform(-0.5, 0.5)
        t += seconds
        ws = spec.base_bytes + spec.bytes_per_session * sessions + rng.gauss(0, spec.noise_bytes)
        if ws >= limit:
            restarts += 1
            ooms += 1
            oom_batch, oom_sessions = batch, sessions
            row("batch", batch, sessions, spec.base_bytes * 0.6, killed=True, batch_seconds=seconds)
            break
        row("batch", batch, sessions, ws, batch_seconds=seconds)
    if oom_batch is not None:
        peak = (spec.base_bytes + spec.bytes_per_session * sessions) * spec.restart_peak_fraction
        for i in range(1, spec.post_oom_samples + 1):
            t += 5.0
            ws = spec.base_bytes + (peak - spec.base_bytes) * min(1.0, i / 3)
            killed = ws >= limit and i == 3
            if killed:
                restarts += 1
                ooms += 1
            row("post-oom", oom_batch, sessions, min(ws, limit * 0.999), killed=killed)

    with (run_dir / "samples.csv").open("w", newline="") as f:
        dict_writer = csv.DictWriter(f, fieldnames=SAMPLES_HEADER)
        dict_writer.writeheader()
        dict_writer.writerows(rows)

    status = "oom" if oom_batch is not None else "max-batches"
    run = {
        "schema": 1,
        "run_id": run_id,
        "started_at": "2024-05-01T12:00:00Z",
        "finished_at": "2024-05-01T12:09:30Z",
        "scenario": spec.scenario,
        "options": {
            "mem_limit": f"{spec.limit_mi}Mi",
            "namespaces": 100,
            "sessions_per_ns": 10,
            "batch_size": spec.batch_size,
            "cache_mode": "full",
            "profile": "memray" if spec.memray else "none",
        },
        "limit_bytes": limit,
        "versions": {
            "triage": "0.1.0",
            "python": "3.11.7",
            "kubernetes_server": "v1.20.2",
            "operator_image": "localhost/agentic-operator:dev",
        },
        "cluster": {
            "context": "triage-local",
            "server": "https://127.0.0.1:16443",
            "kind": "local",
        },
        "outcome": {
            "status": status,
            "oom_batch": oom_batch,
            "oom_sessions": oom_sessions,
            "message": (
                f"operator OOMKilled at batch {oom_batch}"
                if oom_batch
                else f"stopped after {spec.max_batches} batches"
            ),
        },
        "restore": {"status": "restored", "message": "Deployment restored to its original state"},
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))

    if spec.latency_sessions:
        with (run_dir / "latency.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LATENCY_HEADER)
            for i in range(spec.latency_sessions):
                created = 1_714_564_800.0 + rng.uniform(0, 2)
                pod = created + rng.uniform(0.05, 0.4)
                sched = pod + rng.uniform(0.01, 0.2)
                running = sched + rng.lognormvariate(0.3, 0.5)
                # A few sessions never start: the report must count them, not drop them.
                never = i % 25 == 24
                ready = running + rng.uniform(0.1, 1.0)
                w.writerow([f"s-{i:04d}", f"ns-{i % 10:02d}", f"{created:.3f}", f"{pod:.3f}",
                            f"{sched:.3f}", "" if never else f"{running:.3f}",
                            "" if never else f"{ready:.3f}",
                            "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
                            if never else ""])  # fmt: skip

    if spec.memray:
        last = oom_batch - 1 if oom_batch else spec.max_batches
        for batch in range(1, max(1, last) + 1):
            d = run_dir / "profiles" / f"batch-{batch:04d}"
            d.mkdir(parents=True)
            n = batch * spec.batch_size
            top = [
                {"function": "_store_object", "file": "agentic_operator/_cache.py", "line": 88,
                 "bytes": int(spec.bytes_per_session * 0.6 * n), "count": 4 * n},
                {"function": "loads", "file": "json/decoder.py", "line": 353,
                 "bytes": int(spec.bytes_per_session * 0.25 * n), "count": 9 * n},
                {"function": "_index_by_namespace", "file": "agentic_operator/_cache.py",
                 "line": 131, "bytes": int(40 * n), "count": n},
                {"function": "<module>", "file": "kubernetes/client/models/__init__.py",
                 "line": 1, "bytes": 6 * MI, "count": 20_000},
                {"function": "_start", "file": "agentic_operator/_watch.py", "line": 42,
                 "bytes": 512 * 1024, "count": 300},
            ]  # fmt: skip
            heap = sum(int(s["bytes"]) for s in top) + 8 * MI  # type: ignore[call-overload]
            (d / "memray.json").write_text(
                json.dumps({"heap_bytes": heap, "allocations": 15 * n + 20_300, "top": top})
            )
            if spec.pyspy:
                (d / "pyspy.txt").write_text(
                    'Thread 0x7f01 (active): "MainThread"\n'
                    "    _store_object (agentic_operator/_cache.py:88)\n"
                    "    _on_event (agentic_operator/_watch.py:77)\n"
                    "    run (agentic_operator/_watch.py:42)\n"
                )
    return run_dir
