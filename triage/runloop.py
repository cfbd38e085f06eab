"""The batches of a run: load, settle, sample, profile, look for other writers, and the endings.

One batch: create its objects, wait until the operator has seen them and its memory stopped
moving (`settle`), take the row of samples.csv from every memory source, hand the profiler
its snapshot (which it takes on a worker thread), and check that nobody else changed the
Deployment. A run ends at the first OOMKill (then keeps sampling through the restart: the
re-list is often the real peak), at the last batch (then, by default, restarts the operator
to measure a cold start with everything already there), or when another writer changed the
Deployment (then the load stops at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.kube import KubeError
from triage.cluster import Cluster
from triage.custom_objects import ServedKind
from triage.drift import Drift, DriftWatch
from triage.errors import RunFailedError
from triage.latency import track_latency
from triage.live import LiveView
from triage.load import BatchResult, Loader
from triage.options import ReproduceOptions, Validated
from triage.percentiles import nearest_rank
from triage.profiling import Profiler
from triage.restart import restart
from triage.rundir import Outcome, RunWriter, Sample, iso_now
from triage.sampling import Observation, Sampler
from triage.settle import Settled, settle, stable_between
from triage.target import Target

SAMPLE_INTERVAL = 2.0
#: The longest a cold start is followed: list, sync, settle.
COLD_START_MAX = 90.0
#: Consecutive samples within settle.stable_between of each other that make a re-list finished.
STEADY_SAMPLES = 3
#: A cold start is read twice a second (its peak is short) and is over once ready and
#: still for COLD_STEADY readings in a row (two seconds).
COLD_START_POLL = 0.5
COLD_STEADY = 4
#: How long the apiserver may stay away before the run gives up (restoring needs it too).
OUTAGE_MAX = 90.0


class ChangedByOthers(Exception):
    def __init__(self, drift: Drift) -> None:
        super().__init__(drift.describe())
        self.drift = drift


@dataclass
class RunLoop:
    cluster: Cluster
    options: ReproduceOptions
    valid: Validated
    writer: RunWriter
    target: Target
    sampler: Sampler
    profiler: Profiler
    drift: DriftWatch
    view: LiveView
    kinds: list[tuple[Any, ServedKind]] = field(default_factory=list)
    #: The run so far: every batch's counts added up.
    totals: BatchResult = field(default_factory=BatchResult)
    outcome: Outcome = field(default_factory=lambda: Outcome("completed"))
    rows: list[Sample] = field(default_factory=list)
    restarted_at: int | None = None

    # -- rows -------------------------------------------------------------------------------

    def _row(
        self, kind: str, batch: int, obs: Observation, *, result: BatchResult | None = None,
        settle_seconds: float | None = None,
    ) -> Sample:  # fmt: skip
        sample = Sample(
            kind=kind,  # type: ignore[arg-type]
            batch=batch,
            t_seconds=round(self.writer.elapsed(), 3),
            timestamp=iso_now(),
            sessions=self.totals.sessions,
            namespaces=self.totals.namespaces,
            objects=self.totals.objects,
            memory=obs.memory,
            state=obs.state,
            batch_seconds=None if result is None else round(result.seconds, 3),
            create_rate=None if result is None else round(result.rate, 1),
            settle_seconds=None if settle_seconds is None else round(settle_seconds, 2),
            payload_bytes=self.totals.payload_bytes,
        )
        self.writer.add_sample(sample)
        self.rows.append(sample)
        self.view.row(sample)
        return sample

    def _resilient(self, what: Callable[[], Observation]) -> Observation:
        """A sample that waits out an apiserver that restarts, then gives up (bounded)."""
        start: float | None = None
        while True:
            try:
                obs = what()
            except KubeError as e:
                now = time.monotonic()
                if start is None:
                    start = now
                    self.writer.event("apiserver-unreachable", f"sampling failed: {e}")
                    self.view.note(f"apiserver unreachable ({e.__class__.__name__}); waiting")
                if now - start > OUTAGE_MAX:
                    raise RunFailedError(
                        f"the apiserver did not answer for {OUTAGE_MAX:.0f}s while sampling: {e}"
                    ) from e
                time.sleep(2.0)
                continue
            if start is not None:
                took = time.monotonic() - start
                self.writer.event(
                    "apiserver-back", f"the apiserver answers again after {took:.0f}s"
                )
                self.view.note(f"apiserver back after {took:.0f}s; the run goes on")
            return obs

    def _settle(self) -> Settled:
        return settle(
            lambda: self._resilient(self.sampler.quick),
            ceiling=self.options.settle_max,
            has_cgroup=lambda: not self.sampler.memstat.unavailable,
        )

    def idle_reading(self) -> Observation:
        """The operator's memory once it has stopped moving, settled as the baseline is:
        the reading memray's fixed cost compares with the profiled pod's baseline."""
        return self._settle().last

    def _settled_sample(self) -> tuple[Observation, float, bool]:
        """(the batch's reading, seconds to settle, an OOM was seen)."""
        s = self._settle()
        loaded_at = time.time() - s.seconds
        if s.oom:
            return s.last, s.seconds, True
        # The row comes from every source; without memory.stat the kubelet's stats must be
        # newer than the load, or the growth would be attributed to the wrong batch.
        obs = self._resilient(lambda: self.sampler.sample(fresh_after=loaded_at))
        return obs, s.seconds, obs.state.oom_killed

    # -- the run ----------------------------------------------------------------------------

    def execute(self) -> None:
        sc = self.valid.scenario
        baseline, _, _ = self._settled_sample()
        self._row("baseline", 0, baseline)
        self.profiler.snapshot(0, baseline.state.pod)
        plans = sc.plan()[: self.valid.plans]
        with Loader(
            self.cluster,
            run_id=self.writer.run_id,
            concurrency=self.options.concurrency,
            session_phase=sc.session_phase,
            session_shape=sc.session_shape,
            runner_secrets=sc.runner_secrets,
            templates=self.kinds,
            namespace_labels=dict(sc.namespace_labels),
            namespace_prefix=sc.namespace_prefix,
        ) as loader:
            for plan in plans:
                result = loader.run_batch(plan)
                if result.outage_seconds:
                    self.writer.event(
                        "apiserver-unreachable",
                        f"batch {plan.number}: the apiserver was away {result.outage_seconds}s; "
                        "the batch went on",
                    )
                self.totals.add(result)
                if sc.burst:
                    self._burst(result)
                obs, settle_s, oom = self._settled_sample()
                self._row("batch", plan.number, obs, result=result, settle_seconds=settle_s)
                if oom:
                    self.outcome = Outcome(
                        status="oom",
                        oom_batch=plan.number,
                        oom_sessions=self.totals.sessions,
                        message=f"OOMKilled after {self.totals.sessions} sessions in batch {plan.number}",
                    )
                    self.view.note(f"OOMKilled in batch {plan.number}")
                    self.profiler.snapshot(plan.number, obs.state.pod, oom=True)
                    self._after_oom(plan.number, obs)
                    return
                self.profiler.snapshot(plan.number, obs.state.pod)
                why = self.profiler.guard(plan.number, obs.state.pod, node=obs.node)
                if why is not None:
                    self.outcome = Outcome("stopped", message=why)
                    self.writer.event("profiler-stopped-load", why, batch=plan.number)
                    self.view.note(why)
                    return
                drift = self.drift.check()
                if drift is not None:
                    raise ChangedByOthers(drift)
                if (
                    self.options.restart_at is not None
                    and self.restarted_at is None
                    and self.totals.sessions >= self.options.restart_at
                ):
                    self.restarted_at = self.totals.sessions
                    if self._cold_start(plan.number):
                        return
        if len(plans) < len(sc.plan()):
            self.outcome = Outcome(
                "max-batches", message=f"stopped after {len(plans)} batches without an OOM"
            )
        else:
            self.outcome = Outcome("completed", message=f"all {len(plans)} batches without an OOM")
        if self.options.cold_start and self.restarted_at is None and plans:
            self._cold_start(plans[-1].number)

    def _burst(self, result: BatchResult) -> None:
        rows = track_latency(
            self.cluster, created=result.created, timeout=self.valid.scenario.latency_timeout
        )
        self.writer.write_latency(rows)
        ready = [r.ready - r.created for r in rows if r.ready and r.created]
        if ready:
            p = {q: nearest_rank(ready, q) for q in (50, 90, 99)}
            self.view.note(
                f"burst: {len(ready)}/{len(rows)} runners ready; created -> ready "
                f"P50 {p[50]:.2f}s P90 {p[90]:.2f}s P99 {p[99]:.2f}s"
            )
        else:
            self.view.note(f"burst: none of {len(rows)} runners became ready")

    def _after_oom(self, batch: int, killed: Observation) -> None:
        # Keep watching through the restart: the relist after it is often the real peak. A
        # restarted container measured once is not yet an answer (its re-list may still be
        # climbing), so the window runs on past --settle-after-oom until the restarted
        # container is killed again or holds steady for STEADY_SAMPLES samples, at most
        # as long again (at least 60 s): a report without either cannot say whether the
        # operator recovers.
        window = self.options.settle_after_oom
        deadline = time.monotonic() + window
        hard = deadline + (max(window, 60.0) if window > 0 else 0.0)
        settled = False
        steady = 0
        last: int | None = None
        while True:
            now = time.monotonic()
            if now >= hard or (now >= deadline and settled):
                break
            time.sleep(SAMPLE_INTERVAL)
            obs = self._resilient(self.sampler.sample)
            self._row("post-oom", batch, obs)
            if obs.state.oom_count > killed.state.oom_count:
                settled = True
            current = obs.memory.unreclaimable_bytes
            restarted = (
                obs.state.state == "running"
                and obs.state.restart_count >= killed.state.restart_count
                and current is not None
            )
            if (
                restarted
                and current is not None
                and last is not None
                and stable_between(last, current)
            ):
                steady += 1
            else:
                steady = 0
            last = current if restarted else None
            settled = settled or steady >= STEADY_SAMPLES
            if obs.state.oom_killed:
                self.profiler.snapshot(batch, obs.state.pod, oom=True)

    def _started_t(self) -> float | None:
        """The followed container's start on the run's clock (`t_seconds`), or None."""
        started = self.sampler.started_epoch()
        if started is None:
            return None
        return self.writer.elapsed() - (time.time() - started)

    def _cold_start(self, batch: int) -> bool:
        """Restart every operator container and follow the re-list; True when it ended in an
        OOM. In place where it can (triage.restart), else by deleting the pod."""
        live = self._live_pods()
        pods = [p["metadata"]["name"] for p in live]
        steady = self.rows[-1].memory.unreclaimable_bytes if self.rows else None
        self.view.note(
            f"cold start: restarting {', '.join(pods)} with {self.totals.sessions} sessions"
        )
        self.sampler.expect_replacement("restarted by triage for the cold start")
        # The captures are copied out first: a deleted pod takes them with it, and a copy
        # beside the re-list would take CPU the re-list is timed on.
        self.profiler.collect()
        self.profiler.read_ended()
        t0 = time.monotonic()
        done = [
            restart(self.cluster, namespace=self.target.namespace,
                    container=self.target.container, pod=p)
            for p in live
        ]  # fmt: skip
        gone = {r.pod for r in done if r.how == "deleted"}
        before = {r.pod: r.restart_count for r in done if r.how == "in-place"}
        for r in done:
            if r.fallback:
                self.view.note(f"cold start: deleted {r.pod} instead: {r.fallback}")
        # Ready is timed from the new container's start, not from the delete: what comes
        # before it (the old pod stopping, scheduling, a host port still held by the old
        # pod) is the cluster's time, not the re-list's. Both are recorded.
        ready_s: float | None = None
        restart_s: float | None = None
        started_t: float | None = None
        calm = 0
        last: int | None = None
        killed = False
        while time.monotonic() - t0 < COLD_START_MAX:
            time.sleep(COLD_START_POLL)
            obs = self._resilient(self.sampler.quick)
            if obs.state.pod in gone or obs.state.state == "absent":
                continue  # the old pod is still going, or the new one not there yet
            if obs.state.restart_count <= before.get(obs.state.pod, -1):
                continue  # the old container is still stopping
            self._row("cold-start", batch, obs)
            if obs.state.oom_killed:
                killed = True
                break
            if started_t is None:
                started_t = self._started_t()
            if obs.state.ready and ready_s is None:
                restart_s = time.monotonic() - t0
                ready_s = restart_s
                if started_t is not None:
                    since_start = self.writer.elapsed() - started_t
                    # Another clock (a remote node's) can put the start outside the restart.
                    if 0 <= since_start <= restart_s:
                        ready_s = since_start
            now = obs.memory.unreclaimable_bytes
            if ready_s is not None and now is not None and last is not None:
                calm = calm + 1 if stable_between(last, now) else 0
            last = now
            if calm >= COLD_STEADY:
                break
        final = self._resilient(self.sampler.sample)
        self._row("cold-start", batch, final)
        killed = killed or final.state.oom_killed
        peak = max(
            (r.memory.unreclaimable_bytes or 0 for r in self.rows if r.kind == "cold-start"),
            default=0,
        )
        self.writer.event(
            "cold-start",
            f"restarted with {self.totals.sessions} sessions: peak {peak / 2**20:.1f} MiB while "
            f"syncing"
            + (
                f", ready {ready_s:.1f}s after its container started ({restart_s:.1f}s after "
                "the restart)"
                if ready_s is not None and restart_s is not None
                else ", never ready"
            )
            + (" - OOMKilled while syncing" if killed else ""),
            sessions=self.totals.sessions,
            ready_seconds=ready_s,
            restart_seconds=restart_s,
            how=sorted({r.how for r in done}),
            fallback=[f"{r.pod}: {r.fallback}" for r in done if r.fallback],
            started_t_seconds=None if started_t is None else round(started_t, 3),
            peak_bytes=peak,
            steady_bytes=steady,
            oom=killed,
        )
        if killed:
            self.outcome = Outcome(
                status="oom",
                oom_batch=batch,
                oom_sessions=self.totals.sessions,
                message=f"OOMKilled while re-listing {self.totals.sessions} sessions after a restart",
            )
        return killed

    def _live_pods(self) -> list[dict[str, Any]]:
        from triage.target import live_pods

        return live_pods(
            self.cluster, namespace=self.target.namespace, deployment=self.target.deployment
        )
