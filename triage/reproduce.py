"""The reproduce orchestrator: drive the operator to an OOM, measure every batch, restore.

The order of steps is the point of this module, because the upstream shell reproducer's
review found its traps in the order: input validated after the Deployment was changed, a
cleanup that did not restore what had been there, a limit lowered under the existing
request. Here:

1. everything that can be checked without the cluster is checked (quantities, scenario);
2. connect, refuse contexts that are not disposable, preflight (CRDs, Deployment, RBAC);
3. the run directory and the journal (the exact original Deployment) are written, fsync'd;
4. only then the Deployment is patched, and from that moment a `finally` restores it on
   success, failure, Ctrl-C and SIGTERM (which is turned into KeyboardInterrupt);
5. batches run until the first OOMKill or the last batch; after an OOM, sampling goes on
   for a while so the report shows the restart peak;
6. run.json records the outcome and the restore, and the exit code says which it was.

`run()` is also what `triage ci` calls, so it takes a plain options object and never parses
command-line strings itself.
"""

from __future__ import annotations

import platform
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from triage.deployment_patch import RunPatch, apply_run_patch, restore
from triage.errors import RestoreError, RunFailedError, TriageError, UsageError
from triage.exitcodes import ExitCode
from triage.guard import check_context
from triage.journal import Journal
from triage.kube import Cluster, connect
from triage.live import LiveView, summary_table
from triage.load import Loader, cleanup, nearest_rank, track_latency
from triage.preflight import container_of, preflight
from triage.profiles import Profiler
from triage.quantity import format_bytes, parse_memory
from triage.rundir import RunDir, iso_now, new_run_id
from triage.sampling import MemorySample, Sampler
from triage.scenario import Scenario, default_scenario, get

PROFILES = ("memray", "py-spy", "none")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: How often to look at the operator while a batch settles, and after an OOM.
SAMPLE_INTERVAL = 2.0


class RunInterruptedError(TriageError):
    """Ctrl-C or SIGTERM; the Deployment was restored (or the restore error says why not)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.INTERRUPTED)


@dataclass
class ReproduceOptions:
    mem_limit: str = "128Mi"
    scenario: str = ""
    namespaces: int | None = None
    sessions_per_ns: int | None = None
    batch_size: int | None = None
    size: str = "full"
    profile: str = "memray"
    cleanup: bool = False
    context: str | None = None
    kubeconfig: str | None = None
    operator_namespace: str = "ambient-code"
    operator_deployment: str = "agentic-operator"
    concurrency: int = 32
    settle: float = 5.0
    settle_after_oom: float = 30.0
    max_batches: int | None = None
    #: The run directory itself; default `<reports_root>/<run-id>`.
    out: Path | None = None
    reports_root: Path = Path("reports")
    allow_any_context: bool = False
    set_env: dict[str, str] = field(default_factory=dict)
    rollout_timeout: float = 180.0
    cleanup_timeout: float = 180.0
    render_report: bool = True

    @classmethod
    def for_scenario(
        cls, scenario: str, *, size: str, out: Path, kubeconfig: Path | str | None
    ) -> ReproduceOptions:
        """What `triage ci` runs: a budgeted scenario at a CI size, measured, cleaned up.

        The limit is generous on purpose: the gate measures steady memory against budgets
        and must not end in an OOM of its own making.
        """
        return cls(
            mem_limit="256Mi",
            scenario=scenario,
            size=size,
            profile="none",
            cleanup=True,
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            settle=3.0,
            settle_after_oom=10.0,
            reports_root=out,
        )


@dataclass(frozen=True)
class Validated:
    limit_bytes: int
    scenario: Scenario
    plans: int


def validate(options: ReproduceOptions) -> Validated:
    """Everything that can be checked without the cluster; raises UsageError naming the option."""
    limit = parse_memory(options.mem_limit, option="--mem-limit")
    if options.profile not in PROFILES:
        raise UsageError(f"--profile {options.profile!r} is not one of {', '.join(PROFILES)}")
    for name in ("namespaces", "sessions_per_ns", "batch_size", "max_batches"):
        value = getattr(options, name)
        low = 0 if name == "sessions_per_ns" else 1
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} {value} must be at least {low}")
    if options.concurrency < 1 or options.concurrency > 512:
        raise UsageError(f"--concurrency {options.concurrency} must be between 1 and 512")
    for name in ("settle", "settle_after_oom"):
        if getattr(options, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more seconds")
    for key in options.set_env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"--set-env {key!r}: not a valid environment variable name")
    if options.out is not None and (options.out / "journal.json").exists():
        # That journal may be the only record of how to restore an earlier run.
        raise UsageError(
            f"--out {options.out} already holds a run (journal.json); pick a new directory"
        )
    scenario = get(options.scenario or default_scenario()).sized(
        options.size,
        namespaces=options.namespaces,
        sessions_per_ns=options.sessions_per_ns,
        batch_size=options.batch_size,
    )
    plans = len(scenario.plan())
    if options.max_batches is not None:
        plans = min(plans, options.max_batches)
    return Validated(limit_bytes=limit, scenario=scenario, plans=plans)


def parse_env_pairs(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings from --set-env into a dict; UsageError on anything else."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(f"--set-env {pair!r} is not KEY=VALUE with a valid variable name")
        out[key] = value
    return out


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # SIGTERM (a CI job timeout, `kill`) must restore the Deployment like Ctrl-C does; the
    # default action would end the process with the operator still crippled.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _versions(cluster: Cluster, deployment: dict[str, Any]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        triage_version = version("agentic-triage")
    except PackageNotFoundError:
        triage_version = "0.1.0"
    try:
        server = str(cluster.json("GET", "/version").get("gitVersion", ""))
    except Exception:
        server = ""
    return {
        "triage": triage_version,
        "python": platform.python_version(),
        "kubernetes_server": server,
        "operator_image": str(container_of(deployment).get("image", "")),
    }


class _Run:
    """State of one run between patch and restore; `execute` is the loop."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        options: ReproduceOptions,
        valid: Validated,
        run_dir: RunDir,
        container: str,
        view: LiveView,
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.scenario = valid.scenario
        self.limit = valid.limit_bytes
        self.plans = valid.scenario.plan()[: valid.plans]
        self.rd = run_dir
        self.container = container
        self.view = view
        self.rows: list[dict[str, Any]] = []
        self.sessions = self.namespaces = self.objects = 0
        self.outcome: dict[str, Any] = {"status": "completed", "message": ""}

    def _row(
        self,
        kind: str,
        batch: int,
        sample: MemorySample,
        *,
        oom: bool,
        batch_seconds: float | None = None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "kind": kind,
            "batch": batch,
            "t_seconds": round(self.rd.elapsed(), 3),
            "timestamp": iso_now(),
            "sessions": self.sessions,
            "namespaces": self.namespaces,
            "objects": self.objects,
            "working_set_bytes": sample.working_set_bytes,
            "rss_bytes": sample.rss_bytes,
            "metrics_api_bytes": sample.metrics_api_bytes,
            "operator_rss_bytes": sample.operator_rss_bytes,
            "restart_count": sample.restart_count,
            "oom_count": sample.oom_count,
            "oom_killed": oom,
            "batch_seconds": batch_seconds,
            "create_rate": rate,
            "pod": sample.pod,
        }
        self.rd.add_sample(row)
        self.rows.append(row)
        self.view.row(row)
        return row

    def _settle(self, sampler: Sampler, seconds: float) -> tuple[MemorySample, bool]:
        """Wait `seconds`, looking every SAMPLE_INTERVAL; stop early at an OOM."""
        loaded_at = time.time()
        deadline = time.monotonic() + seconds
        oom = False
        sample = sampler.sample()
        oom |= sample.oom_killed
        while not oom and time.monotonic() < deadline:
            time.sleep(min(SAMPLE_INTERVAL, max(deadline - time.monotonic(), 0)))
            sample = sampler.sample()
            oom |= sample.oom_killed
        if not oom and sample.state == "running":
            # The row must show memory measured after this batch's load, not before it.
            sample = sampler.sample(fresh_after=loaded_at)
            oom |= sample.oom_killed
        return sample, oom

    def _wait_running(self, sampler: Sampler, timeout: float = 90) -> MemorySample:
        deadline = time.monotonic() + timeout
        sample = sampler.sample()
        while sample.state != "running" and time.monotonic() < deadline:
            time.sleep(1)
            sample = sampler.sample()
        return sample

    def execute(self, sampler: Sampler, profiler: Profiler) -> None:
        sc = self.scenario
        baseline = sampler.sample(fresh_after=time.time())
        self._row("baseline", 0, baseline, oom=baseline.oom_killed)
        profiler.take(0, baseline.pod, self.container)
        with Loader(
            self.cluster,
            run_id=self.rd.run_id,
            concurrency=self.options.concurrency,
            session_phase=sc.session_phase,
            session_shape=sc.session_shape,
        ) as loader:
            for plan in self.plans:
                result = loader.run_batch(plan)
                self.sessions += result.sessions
                self.namespaces += result.namespaces
                self.objects += result.objects
                if sc.burst:
                    rows = track_latency(
                        self.cluster, created=result.created, timeout=sc.latency_timeout
                    )
                    self.rd.write_latency(r.as_row() for r in rows)
                    ready = [r.ready - r.created for r in rows if r.ready and r.created]
                    p = {q: nearest_rank(ready, q) or 0.0 for q in (50, 90, 99)}
                    self.view.note(
                        f"burst: {len(ready)}/{len(rows)} runners ready; created -> ready "
                        f"P50 {p[50]:.2f}s P90 {p[90]:.2f}s P99 {p[99]:.2f}s"
                        if ready
                        else f"burst: none of {len(rows)} runners became ready"
                    )
                sample, oom = self._settle(sampler, self.options.settle)
                self._row(
                    "batch",
                    plan.number,
                    sample,
                    oom=oom,
                    batch_seconds=round(result.seconds, 3),
                    rate=round(result.rate, 1),
                )
                if oom:
                    self.outcome = {
                        "status": "oom",
                        "oom_batch": plan.number,
                        "oom_sessions": self.sessions,
                        "message": f"OOMKilled after {self.sessions} sessions in batch {plan.number}",
                    }
                    self.view.note(f"OOMKilled in batch {plan.number}")
                    self._after_oom(sampler, profiler, plan.number, sample)
                    return
                profiler.take(plan.number, sample.pod, self.container)
        if self.options.max_batches is not None and len(self.plans) < len(sc.plan()):
            self.outcome = {
                "status": "max-batches",
                "message": f"stopped after {len(self.plans)} batches without an OOM",
            }
        else:
            self.outcome = {
                "status": "completed",
                "message": f"all {len(self.plans)} batches without an OOM",
            }

    def _after_oom(
        self, sampler: Sampler, profiler: Profiler, batch: int, killed: MemorySample
    ) -> None:
        # Keep watching through the restart: the relist after it is often the real peak.
        # The window is extended (once, by as much again, at least 30 s) until the restarted
        # container has been measured or killed again: the kubelet's stats lag a container
        # start, and a report without either cannot say whether the operator recovers.
        settle = self.options.settle_after_oom
        deadline = time.monotonic() + settle
        hard_deadline = deadline + (max(settle, 30.0) if settle > 0 else 0.0)
        profiled = False
        settled = False
        while True:
            now = time.monotonic()
            if now >= hard_deadline or (now >= deadline and settled):
                break
            time.sleep(SAMPLE_INTERVAL)
            sample = sampler.sample()
            self._row("post-oom", batch, sample, oom=sample.oom_killed)
            # The kill's own sample already counts the restart; a running container with a
            # working set after it is the restarted one.
            measured = (
                sample.state == "running"
                and sample.restart_count >= killed.restart_count
                and sample.working_set_bytes is not None
            )
            settled = settled or measured or sample.oom_count > killed.oom_count
            if not profiled and (self.options.profile == "memray" or sample.state == "running"):
                # The capture of the killed process is still in the emptyDir; memray's is read
                # through the keeper container, which runs while the operator crash-loops;
                # py-spy needs the operator process itself running.
                profiled = profiler.take(batch, sample.pod, self.container, oom=True) is None
        if not profiled:
            sample = self._wait_running(sampler)
            profiler.take(batch, sample.pod, self.container, oom=True)


def run(
    options: ReproduceOptions,
    *,
    console: Console | None = None,
    on_patched: Callable[[Path], None] | None = None,
) -> Path:
    """Run one reproduction; return its run directory or raise a TriageError with its exit code.

    Raises before touching the cluster for bad input (UsageError), a refused context or a
    failed preflight; after the first change it always restores the Deployment first.
    """
    console = console or Console(stderr=True)
    valid = validate(options)
    cluster = connect(kubeconfig=options.kubeconfig, context=options.context)
    check_context(cluster, allow_any=options.allow_any_context)
    deployment = preflight(
        cluster,
        namespace=options.operator_namespace,
        deployment=options.operator_deployment,
        mem_limit_bytes=valid.limit_bytes,
        profile=options.profile,
    )
    run_id = new_run_id(valid.scenario.name)
    rd = RunDir(options.out or options.reports_root / run_id, run_id=run_id)
    rd.update_meta(
        started_at=iso_now(),
        finished_at=None,
        scenario=valid.scenario.name,
        options={
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "mem_limit": format_bytes(valid.limit_bytes),
            "scenario": valid.scenario.name,
            "namespaces": valid.scenario.namespaces,
            "sessions_per_ns": valid.scenario.sessions_per_ns,
            "batch_size": valid.scenario.batch_size,
        },
        limit_bytes=valid.limit_bytes,
        versions=_versions(cluster, deployment),
        cluster={"context": cluster.context, "server": cluster.server, "kind": cluster.kind},
        planned=valid.scenario.totals(),
        # What a kill -9 leaves behind: `triage restore RUN_DIR` finishes the job.
        outcome={"status": "interrupted", "message": "the run did not finish"},
        restore={
            "status": "failed",
            "message": f"not restored yet; run `triage restore {rd_path(options, run_id)}`",
        },
    )
    journal = Journal.create(rd.path, cluster=cluster, deployment=deployment)
    container = str(container_of(deployment)["name"])
    view = LiveView(
        console=console,
        run_id=run_id,
        scenario=valid.scenario.name,
        limit_bytes=valid.limit_bytes,
        batches=valid.plans,
    )
    state = _Run(
        cluster=cluster, options=options, valid=valid, run_dir=rd, container=container, view=view
    )
    failure: TriageError | None = None
    unexpected: BaseException | None = None
    restore_info: dict[str, Any] = {}
    cleanup_info: dict[str, Any] = {"status": "kept"}
    profiler = Profiler(
        cluster, run_dir=rd.path, namespace=options.operator_namespace, kind=options.profile
    )
    with _sigterm_as_interrupt():
        try:
            with view:
                try:
                    view.note(
                        f"patching {options.operator_namespace}/{options.operator_deployment}: limit {format_bytes(valid.limit_bytes)}, profile {options.profile}"
                    )
                    apply_run_patch(
                        cluster,
                        journal,
                        RunPatch(
                            mem_limit_bytes=valid.limit_bytes,
                            profile=options.profile,
                            extra_env=dict(options.set_env),
                        ),
                        timeout=options.rollout_timeout,
                    )
                    if on_patched is not None:
                        on_patched(rd.path)
                    with Sampler(
                        cluster,
                        namespace=options.operator_namespace,
                        deployment=options.operator_deployment,
                        container=container,
                    ) as sampler:
                        state.execute(sampler, profiler)
                except KeyboardInterrupt:
                    state.outcome = {
                        "status": "interrupted",
                        "message": "interrupted (Ctrl-C or SIGTERM)",
                    }
                    failure = RunInterruptedError(
                        f"interrupted; the Deployment was restored; partial results in {rd.path}"
                    )
                except TriageError as e:
                    state.outcome = {"status": "error", "message": e.message}
                    failure = RunFailedError(f"{e.message} (Deployment restored; see {rd.path})")
                    failure.__cause__ = e
                except Exception as e:
                    state.outcome = {"status": "error", "message": f"{e.__class__.__name__}: {e}"}
                    unexpected = e
        finally:
            # Always, whatever happened above; Ctrl-C and SIGTERM are ignored during restore so
            # the restore itself is never cut in half.
            previous_handlers = _ignore_signals()
            try:
                try:
                    result = restore(cluster, journal, timeout=options.rollout_timeout)
                    restore_info = {
                        "status": "restored",
                        "message": "spec put back from the journal"
                        if result == "restored"
                        else "the Deployment already matched the journal",
                    }
                except TriageError as e:
                    restore_info = {
                        "status": "failed",
                        "message": f"{e.message}; run `triage restore {rd.path}`",
                    }
                    failure = RestoreError(restore_info["message"])
                if options.cleanup:
                    cleanup_info = _cleanup(cluster, rd.run_id, options.cleanup_timeout, view)
            finally:
                _restore_signals(previous_handlers)
                if profiler.notes:
                    rd.update_meta(profile_notes=profiler.notes)
                rd.update_meta(
                    finished_at=iso_now(),
                    outcome=state.outcome,
                    restore=restore_info,
                    cleanup=cleanup_info,
                    totals={
                        "sessions": state.sessions,
                        "namespaces": state.namespaces,
                        "objects": state.objects,
                    },
                )
                rd.close()
    console.print(
        summary_table(
            state.rows, limit_bytes=valid.limit_bytes, outcome=state.outcome, restore=restore_info
        )
    )
    if unexpected is not None:
        raise unexpected
    if failure is not None:
        failure.run_dir = rd.path  # type: ignore[attr-defined]
        raise failure
    if options.render_report:
        _render_report(rd.path, console)
    console.print(f"run directory: [bold]{rd.path}[/bold]", highlight=False)
    return rd.path


def rd_path(options: ReproduceOptions, run_id: str) -> Path:
    return options.out or options.reports_root / run_id


def _cleanup(cluster: Cluster, run_id: str, timeout: float, view: LiveView) -> dict[str, Any]:
    try:
        res = cleanup(cluster, run_id=run_id, timeout=timeout)
    except TriageError as e:
        view.note(f"cleanup failed: {e.message}")
        return {"status": "failed", "message": e.message}
    if res.stuck:
        stuck = "; ".join(f"{ns}: {', '.join(f)}" for ns, f in sorted(res.stuck.items()))
        view.note(f"cleanup: {len(res.stuck)} namespace(s) still terminating: {stuck}")
        return {"status": "stuck", "deleted": len(res.deleted), "stuck": res.stuck}
    view.note(f"cleanup: deleted {len(res.deleted)} namespace(s) in {res.seconds:.0f}s")
    return {"status": "deleted", "deleted": len(res.deleted), "seconds": round(res.seconds, 1)}


def _ignore_signals() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _render_report(run_dir: Path, console: Console) -> None:
    # Lazy and optional: the report package renders offline and may be absent or broken
    # in a partial checkout; the run's data is already safe on disk either way.
    try:
        from triage.report import load_run, render_report, summarize

        render_report(summarize(load_run(run_dir)), out_dir=run_dir)
    except Exception as e:
        console.print(
            f"[yellow]note:[/yellow] report not rendered ({e.__class__.__name__}: {e}); run `triage report {run_dir}`",
            highlight=False,
        )
        return
    console.print(f"report: {run_dir / 'report.html'}", highlight=False)
