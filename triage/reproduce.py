"""The reproduce orchestrator: drive the operator to an OOM, measure every batch, restore.

The order of steps is the point of this module, because the upstream shell reproducer's
review found its traps in the order: input validated after the Deployment was changed, a
cleanup that did not restore what had been there, a limit lowered under the existing
request. Here:

1. everything that can be checked without the cluster is checked (options, scenario, --out);
2. connect, refuse contexts that are not disposable, preflight (kinds, Deployment, RBAC,
   the profiler's prerequisites, admission of the patched pod);
3. the run lock is taken on the cluster (another run holds it: exit 7, nothing changed);
4. the journal (the exact original Deployment) is written and fsync'd;
5. only then the Deployment is patched, and from that moment a `finally` restores it on
   success, failure, Ctrl-C and SIGTERM (turned into KeyboardInterrupt);
6. batches run (`runloop`); the profiler's raw data is copied out while its pod still
   exists; the Deployment is restored (three-way: another writer's changes stay) and the
   lock released at once; the profiles are parsed, the report rendered, and the run's
   namespaces are deleted in the background.

`run()` is also what `triage ci` calls, so it takes a plain options object.
"""

from __future__ import annotations

import platform
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from agentic_operator.kube import KubeError
from triage.cleanup import start_background, wait_background
from triage.cluster import Cluster, connect
from triage.drift import DriftWatch
from triage.errors import (
    ChangedByOthersError,
    RestoreError,
    RunFailedError,
    RunInterruptedError,
    TriageError,
)
from triage.guard import check_context
from triage.journal import Journal
from triage.live import LiveView, summary_table
from triage.lock import RunLock
from triage.memstat import FORMULAS
from triage.options import ReproduceOptions, Validated, check_run_dir, validate
from triage.patch import RunPatch, apply, patched_spec
from triage.preflight import Checked, admission_dry_run, preflight
from triage.profiling import Created, Factory, Profiler
from triage.quantity import format_bytes
from triage.restore import RestoreResult, restore
from triage.rundir import Outcome, ProfilerInfo, RunWriter, iso_now, new_run_id
from triage.runloop import ChangedByOthers, RunLoop
from triage.sampling import Sampler
from triage.target import require_memray

#: RBAC a profiler needs beyond a run's own (see preflight's list and deploy/triage).
_PROFILER_VERBS: dict[str, tuple[tuple[str, str, str, str, bool], ...]] = {
    "memray": (("create", "", "configmaps", "", True), ("delete", "", "configmaps", "", True)),
    "pprof": (("create", "", "pods", "portforward", True),),
}


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


@contextmanager
def _restoring(console: Console, run_dir: Path) -> Iterator[None]:
    """While restoring, Ctrl-C and SIGTERM say what is going on instead of cutting it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        console.print(
            "[yellow]restoring the Deployment; it finishes in a moment (if this process is "
            f"killed, `triage restore {run_dir}` finishes it from the journal)[/yellow]",
            highlight=False,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _versions(cluster: Cluster, deployment: dict[str, Any], container: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        triage_version = version("agentic-triage")
    except PackageNotFoundError:
        triage_version = "0.1.0"
    try:
        server = str(cluster.client.get("/version").get("gitVersion", ""))
    except KubeError:
        server = ""
    image = next(
        (c.get("image", "") for c in deployment["spec"]["template"]["spec"]["containers"]
         if c["name"] == container), "",
    )  # fmt: skip
    return {
        "triage": triage_version,
        "python": platform.python_version(),
        "kubernetes_server": server,
        "operator_image": str(image),
    }


def _operators(cluster: Cluster) -> list[dict[str, Any]]:
    """Deployments that look like operators, cluster-wide: the report names who could act."""
    try:
        items = cluster.client.list("/apis/apps/v1/deployments").get("items", [])
    except KubeError:
        return []
    out = []
    for d in items:
        ns = d["metadata"]["namespace"]
        if ns.startswith("kube-") or not (d.get("status") or {}).get("readyReplicas"):
            continue
        out.append(
            {
                "namespace": ns,
                "name": d["metadata"]["name"],
                "replicas": d["spec"].get("replicas", 1),
            }
        )
    return out


def _create_objects(cluster: Cluster, journal: Journal, created: list[Created]) -> None:
    for obj in created:
        journal.record("create", path=obj.path, kind=obj.kind)
        try:
            cluster.client.create(obj.collection, obj.body)
        except KubeError as e:
            raise RunFailedError(f"could not create {obj.kind} {obj.path}: {e}") from e


def plan_changes(
    options: ReproduceOptions, valid: Validated, checked: Checked, profiler: Profiler
) -> tuple[dict[str, Any], list[Created]]:
    """The spec the run will apply and the objects it will create beside the Deployment."""
    created: list[Created] = []
    total = valid.scenario.totals()
    spec = patched_spec(
        checked.deployment["spec"],
        RunPatch(
            mem_limit_bytes=valid.limit_bytes,
            container=checked.target.container,
            extra_env=dict(options.set_env),
        ),
        profile=lambda s: created.extend(profiler.modify(s, planned_sessions=total["sessions"])),
    )
    return spec, created


#: Pod template annotation of the spec rolled out without the profiler (value: the run id).
UNPROFILED_ANNOTATION = "triage.ambient-code.io/unprofiled-start"


def unprofiled_spec(
    options: ReproduceOptions, valid: Validated, checked: Checked, *, run_id: str
) -> dict[str, Any]:
    """The run's spec without the profiler: the process memray's fixed cost is measured on.

    The annotation makes it a fresh pod even when the run changes nothing else: the pod that
    was running has been up for as long as it has, with whatever it cached meanwhile (a
    previous run's sessions, still held after they were deleted), so it is not the same
    program state as the profiled pod's start.
    """
    return patched_spec(
        checked.deployment["spec"],
        RunPatch(
            mem_limit_bytes=valid.limit_bytes,
            container=checked.target.container,
            extra_env=dict(options.set_env),
            pod_annotations={UNPROFILED_ANNOTATION: run_id},
        ),
    )


def run(
    options: ReproduceOptions,
    *,
    console: Console | None = None,
    on_patched: Callable[[Path], None] | None = None,
) -> Path:
    """Run one reproduction; return its run directory or raise a TriageError with its exit code.

    Raises before touching the cluster for bad input (UsageError), a refused context, a held
    lock or a failed preflight; after the first change it always restores the Deployment.
    """
    console = console or Console(stderr=True)
    valid = validate(options)
    run_id = new_run_id(valid.scenario.name)
    path = options.out or options.reports_root / run_id
    if not options.dry_run:
        check_run_dir(path)
    cluster = connect(kubeconfig=options.kubeconfig, context=options.context)
    check_context(cluster, allow_any=options.allow_any_context)
    kind = valid.profiler.kind
    checked = preflight(
        cluster,
        namespace=options.operator_namespace,
        deployment=options.operator_deployment,
        scenario=valid.scenario,
        mem_limit_bytes=valid.limit_bytes,
        container=options.container,
        target_command=options.target_command,
        needs_command=kind in ("memray", "py-spy"),
        extra_verbs=_PROFILER_VERBS.get(kind, ()),
    )
    target = checked.target
    if kind == "memray" and checked.pod is not None:
        require_memray(cluster, target, pod=checked.pod)
    lock = RunLock(cluster, namespace=target.namespace, deployment=target.deployment, run_id=run_id)
    if options.dry_run:
        from triage.dryrun import show_plan

        lock.check()
        show_plan(cluster, options=options, valid=valid, checked=checked, console=console)
        return path
    writer = RunWriter(path, run_id=run_id)
    profiler = Factory(valid.profiler).build(cluster, run=writer, target=target)
    profiler.preflight(pod=checked.pod)
    spec, created = plan_changes(options, valid, checked, profiler)
    admission_dry_run(cluster, namespace=target.namespace, spec=spec)
    lock.acquire(run_dir=str(path))
    try:
        return _run_locked(
            cluster, options, valid, checked, writer, profiler, lock, spec, created, console,
            on_patched,
        )  # fmt: skip
    finally:
        lock.release()


def _run_locked(
    cluster: Cluster,
    options: ReproduceOptions,
    valid: Validated,
    checked: Checked,
    writer: RunWriter,
    profiler: Profiler,
    lock: RunLock,
    spec: dict[str, Any],
    created: list[Created],
    console: Console,
    on_patched: Callable[[Path], None] | None,
) -> Path:
    target = checked.target
    path = writer.path
    totals = valid.scenario.totals()
    writer.update_meta(
        scenario=valid.scenario.name,
        started_at=iso_now(),
        options={
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "mem_limit": format_bytes(valid.limit_bytes),
            "scenario": valid.scenario.name,
            "namespaces": valid.scenario.namespaces,
            "sessions_per_ns": valid.scenario.sessions_per_ns,
            "batch_size": valid.scenario.batch_size,
        },
        limit_bytes=valid.limit_bytes,
        versions=_versions(cluster, checked.deployment, target.container),
        cluster={"context": cluster.context, "server": cluster.server, "kind": cluster.kind},
        target=target.as_meta(),
        operators=_operators(cluster),
        planned={
            **totals,
            "unit": valid.scenario.objects[0].kind
            if valid.scenario.objects and not valid.scenario.sessions_per_ns
            else "sessions",
        },
        # What a kill -9 leaves behind: `triage restore RUN_DIR` finishes the job.
        outcome=Outcome("interrupted", message="the run did not finish"),
        restore={"status": "failed", "message": f"not restored yet; run `triage restore {path}`"},
        profiler=ProfilerInfo(kind=profiler.kind),
    )
    journal = Journal.create(
        path, cluster=cluster, deployment=checked.deployment, run_id=writer.run_id
    )
    journal.record("lock", namespace=lock.namespace, name=lock.name)
    view = LiveView(
        console=console,
        run_id=writer.run_id,
        scenario=valid.scenario.name,
        limit_bytes=valid.limit_bytes,
        batches=valid.plans,
    )

    def event(kind: str, message: str, **data: Any) -> None:
        writer.event(kind, message, **data)
        view.note(message)

    sampler = Sampler(cluster, target, on_event=event)
    drift = DriftWatch(cluster, namespace=target.namespace, name=target.deployment)
    loop = RunLoop(
        cluster=cluster, options=options, valid=valid, writer=writer, target=target,
        sampler=sampler, profiler=profiler, drift=drift, view=view, kinds=checked.kinds,
    )  # fmt: skip
    failure: TriageError | None = None
    unexpected: BaseException | None = None
    restored: RestoreResult | None = None
    before = None
    with _sigterm_as_interrupt():
        try:
            with view:
                try:
                    if profiler.kind == "memray" and checked.pod is not None:
                        # memray's own fixed cost: a fresh pod of the run's spec without memray
                        # at idle, against the profiled pod's baseline; the same program at the
                        # same point but for memray. Not the pod that was running: it has been
                        # up for as long as it has and holds what it cached meanwhile.
                        view.note("starting the operator without memray first, to measure "
                                  "memray's own cost")  # fmt: skip
                        apply(cluster, journal,
                              unprofiled_spec(options, valid, checked, run_id=writer.run_id),
                              timeout=options.rollout_timeout,
                              details={"mem_limit": format_bytes(valid.limit_bytes),
                                       "profile": "none",
                                       "extra_env": dict(options.set_env)})  # fmt: skip
                        if (checked.deployment["spec"].get("replicas") or 1) > 1:
                            sampler.await_leader(timeout=options.rollout_timeout / 3)
                        before = loop.idle_reading()
                    view.note(
                        f"patching {target.namespace}/{target.deployment}: limit "
                        f"{format_bytes(valid.limit_bytes)}, profile {profiler.kind}"
                    )
                    _create_objects(cluster, journal, created)
                    rolled = apply(
                        cluster, journal, spec, timeout=options.rollout_timeout,
                        details={"mem_limit": format_bytes(valid.limit_bytes),
                                 "profile": profiler.kind, "extra_env": dict(options.set_env)},
                    )  # fmt: skip
                    drift.arm(rolled, spec)
                    if (rolled["spec"].get("replicas") or 1) > 1:
                        sampler.await_leader(timeout=options.rollout_timeout / 3)
                    if on_patched is not None:
                        on_patched(path)
                    loop.execute()
                    if before is not None and loop.rows:
                        _fixed_cost(writer, profiler, before.memory.unreclaimable_bytes, loop)
                except ChangedByOthers as e:
                    loop.outcome = Outcome(
                        "stopped", message=f"another writer: {e.drift.describe()}"
                    )
                    event("deployment-changed", f"load stopped: {e.drift.describe()}",
                          fields=list(e.drift.fields), managers=[list(m) for m in e.drift.managers])  # fmt: skip
                    failure = ChangedByOthersError(
                        f"{e.drift.describe()} during the run; the load was stopped and triage's "
                        f"own changes were undone (see {path})"
                    )
                except KeyboardInterrupt:
                    loop.outcome = Outcome("interrupted", message="interrupted (Ctrl-C or SIGTERM)")
                    failure = RunInterruptedError(
                        f"interrupted; the Deployment was restored; partial results in {path}"
                    )
                except TriageError as e:
                    loop.outcome = Outcome("error", message=e.message)
                    failure = RunFailedError(f"{e.message} (Deployment restored; see {path})")
                except Exception as e:
                    loop.outcome = Outcome("error", message=f"{e.__class__.__name__}: {e}")
                    unexpected = e
        finally:
            with _restoring(console, path):
                try:
                    profiler.collect()
                    profiler.start_reading()
                except Exception as e:
                    profiler.notes.append(f"collecting profiles: {e.__class__.__name__}: {e}")
                try:
                    began = round(writer.elapsed(), 3)
                    restored = restore(cluster, journal, timeout=options.rollout_timeout)
                    writer.event(
                        "restore",
                        restored.message,
                        status=restored.status,
                        conflicts=len(restored.conflicts),
                        kept=restored.others,
                        began_t_seconds=began,
                    )
                    released = lock.release()
                    journal.record("unlock", released=released)
                except TriageError as e:
                    message = f"{e.message}; run `triage restore {path}`"
                    writer.update_meta(restore={"status": "failed", "message": message})
                    failure = RestoreError(message)
                sampler.close()
                if restored is not None:
                    writer.update_meta(restore=restored.as_meta())
    profiler.finish()
    profiler.close()
    if profiler.kind != "none":
        # When the profiles were in: the reads of big captures can outlast the restore.
        writer.event("profiles-read", f"{profiler.kind} profiles read", notes=len(profiler.notes))
    writer.update_meta(
        finished_at=iso_now(),
        outcome=loop.outcome,
        totals=asdict(loop.totals),
        memory_formula=_formula(loop),
        profiler=ProfilerInfo(
            kind=profiler.kind,
            fixed_cost_bytes=profiler.info.get("fixed_cost_bytes"),
            accounting="oom-point-corrected" if profiler.info.get("fixed_cost_bytes") else "",
            settings={k: v for k, v in profiler.info.items() if k != "fixed_cost_bytes"},
            notes=tuple(profiler.notes),
        ),
    )
    _finish_cleanup(cluster, options, writer, view)
    writer.close()
    console.print(
        summary_table(
            loop.rows,
            limit_bytes=valid.limit_bytes,
            outcome=loop.outcome,
            restore=restored.message if restored else "failed",
        )
    )
    if unexpected is not None:
        raise unexpected
    if failure is not None:
        failure.run_dir = path
        raise failure
    if options.render_report:
        _render_report(path, console)
    console.print(f"run directory: [bold]{path}[/bold]", highlight=False)
    return path


def _fixed_cost(writer: RunWriter, profiler: Profiler, before: int | None, loop: RunLoop) -> None:
    baseline = loop.rows[0]
    after = baseline.memory.unreclaimable_bytes
    if before is None or after is None:
        profiler.notes.append("memray's fixed cost could not be measured (no memory.stat)")
        return
    if after < before:
        # Noise larger than the cost (or an operator that did not start the same way twice):
        # a zero here would read as "memray is free", which nothing measured says.
        profiler.notes.append(
            f"memray's fixed cost could not be measured: the operator at idle used "
            f"{after / 2**20:.1f} MiB with memray and {before / 2**20:.1f} MiB without"
        )
        return
    cost = after - before
    profiler.info["fixed_cost_bytes"] = cost
    writer.event(
        "profiler-cost",
        f"memray's fixed cost: {cost / 2**20:.1f} MiB at idle (before {before / 2**20:.1f}, "
        f"with memray {after / 2**20:.1f})",
        fixed_cost_bytes=cost,
    )


def _formula(loop: RunLoop) -> str:
    sources = {r.memory.memory_source for r in loop.rows if r.memory.memory_source}
    return "; ".join(FORMULAS[s] for s in sorted(sources) if s in FORMULAS)


def _finish_cleanup(
    cluster: Cluster, options: ReproduceOptions, writer: RunWriter, view: LiveView
) -> None:
    if not options.cleanup:
        writer.update_meta(cleanup={"status": "kept"})
        return
    pid = start_background(
        writer.path, run_id=writer.run_id, kubeconfig=cluster.kubeconfig,
        context=cluster.context, timeout=options.cleanup_timeout,
    )  # fmt: skip
    info: dict[str, Any] = {"status": "running", "pid": pid, "result": "cleanup.json"}
    if options.cleanup_wait:
        done = wait_background(writer.path, timeout=options.cleanup_timeout + 30)
        info = done or info
        stuck = (done or {}).get("stuck") or {}
        if stuck:
            view.note(f"cleanup: {len(stuck)} namespace(s) still terminating: {', '.join(stuck)}")
    else:
        view.note(f"cleanup of the run's namespaces goes on in the background (pid {pid})")
    writer.update_meta(cleanup=info)


def _render_report(run_dir: Path, console: Console) -> None:
    # The run's data is already safe on disk; a report that fails to render is a note.
    try:
        from triage.report import render_report, summarize
        from triage.rundir import load_run

        summary = summarize(load_run(run_dir))
        render_report(summary, out_dir=run_dir)
    except Exception as e:
        console.print(
            f"[yellow]note:[/yellow] report not rendered ({e.__class__.__name__}: {e}); run "
            f"`triage report {run_dir}`",
            highlight=False,
        )
        return
    if summary.why:
        console.print(f"why: {summary.why}", highlight=False, markup=False)
    console.print(f"report: {run_dir / 'report.html'}", highlight=False)


__all__ = ["ReproduceOptions", "run"]
