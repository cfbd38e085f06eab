"""`triage reproduce`: parse and validate the command line, then hand off to triage.reproduce.

Nothing here touches the cluster. Every bad value is turned into one red line and the exit
code documented in triage/exitcodes.py, before the orchestrator connects: a typo must never
cost a half-patched operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from triage.exitcodes import DESCRIPTIONS

_EPILOG = (
    """[bold]Examples[/bold]

  Drive the local operator to an OOMKill at 128Mi, the upstream reproducer's load:
    triage reproduce --mem-limit 128Mi --namespaces 300 --sessions-per-ns 5 --batch-size 50

  Reach the OOM quickly with the unfixed (full) cache, memray captures, then clean up:
    triage reproduce --mem-limit 96Mi --set-env AGENTIC_CACHE_MODE=full --profile memray --cleanup

  Runner startup latency for a burst of sessions:
    triage reproduce --scenario burst --namespaces 5 --sessions-per-ns 20 --profile none

  An operator deployed elsewhere, on a kind cluster:
    triage reproduce --context kind-dev --operator-namespace ops --operator-deployment agentic-operator

[bold]Your own operator[/bold]
    triage reproduce --operator-namespace shop --operator-deployment widget-operator \\
        --scenario ./widgets.yaml --profile py-spy --mem-limit 96Mi --cleanup

[bold]Exit codes[/bold]
"""
    + "\n".join(f"  {int(code):>3}  {text}" for code, text in DESCRIPTIONS.items())
    + "\n"
)


def _scenario_size(flag: str, what: str) -> Any:
    """An option that overrides one of the scenario's sizes; unset, the scenario decides."""
    return typer.Option(None, flag, help=f"{what} (default: the scenario's).")


def register(app: typer.Typer) -> None:
    app.command(name="reproduce", epilog=_EPILOG)(reproduce_command)


def reproduce_command(
    mem_limit: str = typer.Option(
        "128Mi", "--mem-limit", help="Operator memory limit for the run (128Mi, 1Gi, 512M, bytes)."
    ),
    scenario: str = typer.Option(
        "",
        "--scenario",
        help="Load scenario: a name from `triage scenarios list`, or a YAML file of your own "
        "(objects of any kind from templates). Default terminal-sessions.",
    ),
    namespaces: int | None = _scenario_size("--namespaces", "Namespaces to create"),
    sessions_per_ns: int | None = _scenario_size("--sessions-per-ns", "Sessions per namespace"),
    batch_size: int | None = _scenario_size("--batch-size", "Namespaces per batch"),
    max_batches: int | None = typer.Option(
        None, "--max-batches", help="Stop after this many batches even without an OOM."
    ),
    shape_sweep: bool = typer.Option(
        False,
        "--shape-sweep",
        help="Alternate production and minimal sessions per batch: separates the cost per "
        "object from the cost per byte.",
    ),
    profile: str = typer.Option(
        "memray",
        "--profile",
        help="memray (Python heap; memray in the image), py-spy (a sidecar; where threads "
        "are), pprof (Go heap), or none.",
    ),
    container: str | None = typer.Option(
        None, "--container", help="The operator's container when the pod has several."
    ),
    target_command: str | None = typer.Option(
        None,
        "--target-command",
        help="The operator's command line, when neither the Deployment nor /proc/1/cmdline "
        "tells it (e.g. 'kopf run /app/op.py').",
    ),
    native: bool = typer.Option(False, "--native", help="memray: record native (C) frames too."),
    python_allocators: bool = typer.Option(
        True,
        "--python-allocators/--no-python-allocators",
        help="memray: trace Python's allocator, so sites name objects, not 1 MiB arenas.",
    ),
    pprof_port: int = typer.Option(
        6060, "--pprof-port", help="pprof: the port /debug/pprof is on."
    ),
    pprof_env: str = typer.Option(
        "ENABLE_PPROF=true", "--pprof-env", help="pprof: the env entry that turns it on."
    ),
    pyspy_image: str = typer.Option(
        "localhost/triage-pyspy:dev", "--pyspy-image", help="py-spy: the sidecar image."
    ),
    restart_at: int | None = typer.Option(
        None,
        "--restart-at",
        metavar="SESSIONS",
        help="Restart the operator once this many sessions exist and measure the re-list.",
    ),
    cold_start: bool = typer.Option(
        True,
        "--cold-start/--no-cold-start",
        help="Restart the operator at the end of a run that survived and measure the re-list.",
    ),
    cleanup: bool = typer.Option(
        False,
        "--cleanup/--keep",
        help="Delete what the run created (in the background, after the verdict), or keep it.",
    ),
    cleanup_wait: bool = typer.Option(
        False, "--cleanup-wait", help="Wait for the background cleanup before exiting."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what the run would change and create; change nothing."
    ),
    context: str | None = typer.Option(
        None, "--context", help="Kube context (default: the kubeconfig's current one)."
    ),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        envvar="TRIAGE_KUBECONFIG",
        help="Kubeconfig file (default: KUBECONFIG or ~/.kube/config).",
    ),
    operator_namespace: str = typer.Option(
        "ambient-code", "--operator-namespace", help="Namespace of the operator Deployment."
    ),
    operator_deployment: str = typer.Option(
        "agentic-operator", "--operator-deployment", help="Name of the operator Deployment."
    ),
    concurrency: int = typer.Option(
        32, "--concurrency", help="Concurrent requests over the shared connection pool."
    ),
    settle_max: float = typer.Option(
        30.0,
        "--settle-max",
        help="Longest wait after a batch for the operator to go idle and its memory to stop "
        "moving.",
    ),
    settle_after_oom: float = typer.Option(
        30.0,
        "--settle-after-oom",
        help="Seconds to keep sampling after the OOMKill; then on (as long again, at least 60 s) "
        "until the restarted operator holds steady or is killed again.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory (default reports/<run-id>/)."
    ),
    allow_any_context: bool = typer.Option(
        False,
        "--allow-any-context",
        help="Allow a context that is neither kind nor the local cluster.",
    ),
    set_env: list[str] = typer.Option(
        [],
        "--set-env",
        metavar="KEY=VALUE",
        help="Extra operator env for the run (repeatable), e.g. AGENTIC_CACHE_MODE=full.",
    ),
) -> None:
    """Drive the operator to an OOMKill, measure every batch, restore the Deployment exactly."""
    # Imported here: the orchestrator pulls in the cluster client, which other commands
    # (report, compare) must not pay for.
    from triage.options import ReproduceOptions, parse_env_pairs
    from triage.reproduce import run

    options = ReproduceOptions(
        mem_limit=mem_limit,
        scenario=scenario,
        namespaces=namespaces,
        sessions_per_ns=sessions_per_ns,
        batch_size=batch_size,
        max_batches=max_batches,
        shape_sweep=shape_sweep,
        profile=profile,
        container=container,
        target_command=target_command,
        native=native,
        python_allocators=python_allocators,
        pprof_port=pprof_port,
        pprof_env=pprof_env,
        pyspy_image=pyspy_image,
        restart_at=restart_at,
        cold_start=cold_start,
        cleanup=cleanup,
        cleanup_wait=cleanup_wait,
        dry_run=dry_run,
        context=context,
        kubeconfig=kubeconfig,
        operator_namespace=operator_namespace,
        operator_deployment=operator_deployment,
        concurrency=concurrency,
        settle_max=settle_max,
        settle_after_oom=settle_after_oom,
        out=out,
        allow_any_context=allow_any_context,
        set_env=parse_env_pairs(set_env),
    )
    run(options, console=Console(stderr=True))
