"""SYNTHETIC run directories, for analysis and rendering tests only.

These are not measurements. They are generated inputs written THROUGH the run directory's
own writer (`triage.rundir.RunWriter`, the records reproduce writes), so a reader drifting
from the writer fails these tests instead of agreeing with itself. Recorded real runs live
in tests/data/runs/ (one of them in the first format version, to keep old runs readable).

The memory model: unreclaimable memory grows by `bytes_per_session`; the page cache grows
by `cache_per_session` on top (a profiler's capture file), so the working set is the sum.
A report fitted on the working set would read the two together; the headline must not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from triage import rundir as rd

MI = 1024 * 1024


@dataclass(frozen=True)
class Synthetic:
    """Parameters of a synthetic run; defaults give an OOM around batch 7 at 128Mi."""

    scenario: str = "terminal-sessions"
    limit_mi: int = 128
    base_bytes: int = 40 * MI
    bytes_per_session: float = 26_000.0
    #: Page cache growth per session (e.g. a capture file in the container): reclaimable.
    cache_per_session: float = 4_000.0
    noise_bytes: float = 300_000.0
    batch_size: int = 500
    max_batches: int = 12
    post_oom_samples: int = 6
    #: Fraction of the pre-OOM heap the restarted operator reaches when it relists.
    restart_peak_fraction: float = 1.05
    latency_sessions: int = 0
    memray: bool = True
    pyspy: bool = True
    #: The profiler's own cost at idle, recorded in run.json (0: none recorded).
    profiler_fixed_cost: int = 0
    #: A cold start at the end of a run that survived.
    cold_start: bool = False
    #: Its event with the restart's own time and the container's start (runs before these
    #: were recorded have ready_seconds alone).
    cold_start_timing: bool = True
    #: The cold start restarted the container in place (its restartCount goes up by one, and
    #: the sampler marks the restart as triage's own); else the pod was replaced.
    cold_start_in_place: bool = False
    #: A restart triage made before the first sample (so every sample has restartCount 1).
    restarted_before_baseline: bool = False
    seed: int = 1
    run_suffix: str = "a1b2"


def _site(nbytes: int, count: int, *stack: tuple[str, str, int]) -> rd.Site:
    """A site at the leaf of `stack` (leaf first), as a profiler records one."""
    return rd.Site(*stack[0], nbytes, count, tuple(rd.Frame(*frame) for frame in stack))


def write_run(root: Path, spec: Synthetic = Synthetic()) -> Path:
    """Write one synthetic run directory under `root` and return its path."""
    rng = random.Random(spec.seed)
    run_id = f"20240501-120000-{spec.scenario}-{spec.run_suffix}"
    w = rd.RunWriter(root / run_id, run_id=run_id)
    limit = spec.limit_mi * MI
    t = 0.0
    restarts = ooms = 0
    if spec.restarted_before_baseline:
        restarts = 1
        w.event("container-restarted", "restarted (1, restarted by triage): Completed, exit "
                "code 0", restart_count=1, expected=True)  # fmt: skip
    oom_batch: int | None = None
    oom_sessions: int | None = None

    def row(
        kind: str,
        batch: int,
        sessions: int,
        anon: float,
        *,
        killed: bool = False,
        batch_seconds: float | None = None,
    ) -> None:
        cache = 2 * MI + spec.cache_per_session * sessions
        w.add_sample(
            rd.Sample(
                kind=kind,  # type: ignore[arg-type]
                batch=batch,
                t_seconds=round(t, 2),
                timestamp=f"2024-05-01T12:{int(t // 60):02d}:{int(t % 60):02d}Z",
                sessions=sessions,
                namespaces=max(1, sessions // 10),
                objects=sessions * 3,
                memory=rd.Memory(
                    working_set_bytes=int(anon + cache * 0.9),
                    rss_bytes=int(anon),
                    cache_bytes=int(cache),
                    mapped_file_bytes=int(cache * 0.1),
                    anon_bytes=int(anon),
                    shmem_bytes=0,
                    unreclaimable_bytes=int(anon),
                    usage_bytes=int(anon + cache + MI),
                    memory_source="memory.stat v1",
                ),
                state=rd.PodState(
                    pod=f"agentic-operator-7d9f-{restarts}x",
                    container="agentic-operator",
                    restart_count=restarts,
                    oom_count=ooms,
                    oom_killed=killed,
                    ready=not killed,
                    state="running",
                ),
                batch_seconds=batch_seconds,
                create_rate=None if batch_seconds is None else spec.batch_size / batch_seconds,
                settle_seconds=None if batch_seconds is None else 2.5,
                payload_bytes=sessions * 5800,
            )
        )

    w.update_meta(
        scenario=spec.scenario,
        started_at="2024-05-01T12:00:00Z",
        options={
            "mem_limit": f"{spec.limit_mi}Mi",
            "batch_size": spec.batch_size,
            "profile": "memray" if spec.memray else "none",
        },
        limit_bytes=limit,
        versions={"triage": "0.1.0", "kubernetes_server": "v1.20.2"},
        cluster={"context": "triage-local", "server": "https://127.0.0.1:16443", "kind": "local"},
        target={
            "namespace": "ambient-code",
            "deployment": "agentic-operator",
            "container": "agentic-operator",
            "language": "python",
        },
        memory_formula="total_rss + total_shmem (cgroup v1 memory.stat)",
    )
    row("baseline", 0, 0, spec.base_bytes)
    sessions = 0
    for batch in range(1, spec.max_batches + 1):
        sessions += spec.batch_size
        # Batches slow down as the heap grows: GC pressure, the pattern a reviewer looks for.
        seconds = 6.0 + 2.5 * batch + rng.uniform(-0.5, 0.5)
        t += seconds
        anon = spec.base_bytes + spec.bytes_per_session * sessions + rng.gauss(0, spec.noise_bytes)
        if anon >= limit:
            restarts += 1
            ooms += 1
            oom_batch, oom_sessions = batch, sessions
            row("batch", batch, sessions, spec.base_bytes * 0.6, killed=True, batch_seconds=seconds)
            break
        row("batch", batch, sessions, anon, batch_seconds=seconds)
    if oom_batch is not None:
        peak = (spec.base_bytes + spec.bytes_per_session * sessions) * spec.restart_peak_fraction
        for i in range(1, spec.post_oom_samples + 1):
            t += 5.0
            anon = spec.base_bytes + (peak - spec.base_bytes) * min(1.0, i / 3)
            killed = anon >= limit and i == 3
            if killed:
                restarts += 1
                ooms += 1
            row("post-oom", oom_batch, sessions, min(anon, limit * 0.999), killed=killed)
    elif spec.cold_start:
        steady = spec.base_bytes + spec.bytes_per_session * sessions
        started = t + 0.5  # the new container starts half a second before the first sample
        if spec.cold_start_in_place:
            restarts += 1
            w.event("container-restarted", "restarted (1, restarted by triage for the cold "
                    "start): Completed, exit code 0", restart_count=restarts, expected=True)  # fmt: skip
        for f in (0.4, 1.1, 1.25, 1.05, 1.0, 1.0):
            t += 1.0
            row("cold-start", spec.max_batches, sessions, steady * f)
        timing = (
            {"restart_seconds": 9.0, "started_t_seconds": started} if spec.cold_start_timing else {}
        )
        w.event("cold-start", "restarted", sessions=sessions, ready_seconds=3.5, **timing)

    if spec.latency_sessions:
        rows = []
        for i in range(spec.latency_sessions):
            created = 1_714_564_800.0 + rng.uniform(0, 2)
            pod = created + rng.uniform(0.05, 0.4)
            sched = pod + rng.uniform(0.01, 0.2)
            running = sched + rng.lognormvariate(0.3, 0.5)
            # A few sessions never start: the report must count them, not drop them.
            never = i % 25 == 24
            rows.append(
                rd.LatencyRow(
                    session=f"s-{i:04d}",
                    namespace=f"ns-{i % 10:02d}",
                    created=created,
                    pod_created=pod,
                    scheduled=sched,
                    running=None if never else running,
                    ready=None if never else running + rng.uniform(0.1, 1.0),
                    waiting="Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
                    if never
                    else "",
                )
            )
        w.write_latency(rows)

    if spec.memray:
        last = oom_batch - 1 if oom_batch else spec.max_batches
        loop = ("_watch_loop", "agentic_operator/_watch.py", 42)
        on_event = ("_on_event", "agentic_operator/_watch.py", 77)
        store = ("_store_object", "agentic_operator/_cache.py", 88)
        loads = ("loads", "/usr/lib/python3.11/json/__init__.py", 346)
        decode = ("raw_decode", "/usr/lib/python3.11/json/decoder.py", 353)
        for batch in range(0, max(1, last) + 1):
            n = batch * spec.batch_size
            top = (
                _site(int(spec.bytes_per_session * 0.6 * n), 4 * n, store, on_event, loop),
                _site(int(spec.bytes_per_session * 0.25 * n), 9 * n, decode, loads, loop),
                rd.Site("_index_by_namespace", "agentic_operator/_cache.py", 131, int(40 * n), n),
                rd.Site("<module>", "kubernetes/client/models/__init__.py", 1, 6 * MI, 20_000),
            )
            w.write_profile(
                batch,
                rd.HeapProfile(
                    heap_bytes=sum(s.bytes for s in top) + 8 * MI,
                    allocations=15 * n + 20_300,
                    top=top,
                    profiler="memray",
                    python_allocators=True,
                ),
            )
            if spec.pyspy:
                w.write_text(
                    batch,
                    "pyspy.txt",
                    'Thread 0x7f01 (active): "MainThread"\n'
                    "    _store_object (agentic_operator/_cache.py:88)\n"
                    "    _on_event (agentic_operator/_watch.py:77)\n",
                )
    status = "oom" if oom_batch is not None else "max-batches"
    w.update_meta(
        finished_at="2024-05-01T12:09:30Z",
        outcome=rd.Outcome(
            status=status,
            oom_batch=oom_batch,
            oom_sessions=oom_sessions,
            message=f"operator OOMKilled at batch {oom_batch}"
            if oom_batch
            else f"stopped after {spec.max_batches} batches",
        ),
        restore={"status": "restored", "message": "triage's changes were taken back"},
        profiler=rd.ProfilerInfo(
            kind="memray" if spec.memray else "none",
            fixed_cost_bytes=spec.profiler_fixed_cost or None,
            accounting="oom-point-corrected" if spec.profiler_fixed_cost else "",
        ),
    )
    w.close()
    return w.path
