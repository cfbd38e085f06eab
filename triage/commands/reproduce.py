"""`triage reproduce`: parse and validate the command line, then hand off to triage.reproduce.

Nothing here touches the cluster. Every bad value is turned into one red line and the exit
code documented in triage/exitcodes.py, before the orchestrator connects: a typo must never
cost a half-patched operator.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from triage.errors import TriageError
from triage.exitcodes import ExitCode

_EPILOG = """[bold]Examples[/bold]

  Drive the local operator to an OOMKill at 128Mi, the upstream reproducer's load:
    triage reproduce --mem-limit 128Mi --namespaces 300 --sessions-per-ns 5 --batch-size 50

  Reach the OOM quickly with the unfixed (full) cache, memray captures, then clean up:
    triage reproduce --mem-limit 96Mi --set-env AGENTIC_CACHE_MODE=full --profile memray --cleanup

  Runner startup latency for a burst of sessions:
    triage reproduce --scenario burst --namespaces 5 --sessions-per-ns 20 --profile none

  An operator deployed elsewhere, on a kind cluster:
    triage reproduce --context kind-dev --operator-namespace ops --operator-deployment agentic-operator

[bold]Exit codes[/bold]  0 done (OOM reached or all batches), 2 bad input, 3 preflight failed,
4 context refused, 5 run failed (Deployment restored), 6 restore failed (run
`triage restore RUN_DIR`), 130 interrupted (Deployment restored).
"""


def register(app: typer.Typer) -> None:
    app.command(name="reproduce", epilog=_EPILOG)(reproduce_command)


def reproduce_command(
    mem_limit: str = typer.Option(
        "128Mi", "--mem-limit", help="Operator memory limit for the run (128Mi, 1Gi, 512M, bytes)."
    ),
    namespaces: int | None = typer.Option(
        None, "--namespaces", help="Namespaces to create (default: the scenario's)."
    ),
    sessions_per_ns: int | None = typer.Option(
        None, "--sessions-per-ns", help="Sessions per namespace (default: the scenario's)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Namespaces per batch (default: the scenario's)."
    ),
    scenario: str = typer.Option(
        "",
        "--scenario",
        help="Load scenario, see `triage scenarios list` (default terminal-sessions).",
    ),
    profile: str = typer.Option(
        "memray", "--profile", help="Profile per batch: memray, py-spy or none."
    ),
    cleanup: bool = typer.Option(
        False, "--cleanup/--keep", help="Delete what the run created when it ends, or keep it."
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
    settle: float = typer.Option(
        5.0, "--settle", help="Seconds to let the operator settle after each batch."
    ),
    settle_after_oom: float = typer.Option(
        30.0,
        "--settle-after-oom",
        help="Seconds to keep sampling after the OOMKill (restart peak).",
    ),
    max_batches: int | None = typer.Option(
        None, "--max-batches", help="Stop after this many batches even without an OOM."
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
    console = Console(stderr=True)
    # Imported here: the orchestrator pulls in the cluster client, which other commands
    # (report, compare) must not pay for.
    from triage.reproduce import ReproduceOptions, parse_env_pairs, run

    try:
        options = ReproduceOptions(
            mem_limit=mem_limit,
            scenario=scenario,
            namespaces=namespaces,
            sessions_per_ns=sessions_per_ns,
            batch_size=batch_size,
            profile=profile,
            cleanup=cleanup,
            context=context,
            kubeconfig=kubeconfig,
            operator_namespace=operator_namespace,
            operator_deployment=operator_deployment,
            concurrency=concurrency,
            settle=settle,
            settle_after_oom=settle_after_oom,
            max_batches=max_batches,
            out=out,
            allow_any_context=allow_any_context,
            set_env=parse_env_pairs(set_env),
        )
        run(options, console=console)
    except TriageError as e:
        console.print(f"[red]error:[/red] {e.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(int(e.exit_code)) from e
    raise typer.Exit(int(ExitCode.OK))
