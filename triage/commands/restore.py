"""`triage restore RUN_DIR`: put the operator Deployment back from a run's journal.

A run restores on its own when it ends, is interrupted or gets SIGTERM; this command is for
the cases it could not (kill -9, a lost machine). It needs nothing but the run directory,
and running it twice is harmless.
"""

from __future__ import annotations

from pathlib import Path

import typer

from triage.deployment_patch import restore
from triage.errors import TriageError
from triage.exitcodes import ExitCode
from triage.journal import Journal
from triage.kube import connect
from triage.output import err_console, fail

_EPILOG = """[bold]Examples[/bold]

  triage restore reports/20261124-101500-terminal-sessions-3f2a

  triage restore reports/demo --kubeconfig ~/.kube/triage-local.yaml --no-wait
"""


def register(app: typer.Typer) -> None:
    app.command(name="restore", epilog=_EPILOG)(restore_command)


def restore_command(
    run_dir: Path = typer.Argument(..., help="The run directory holding journal.json."),
    kubeconfig: str | None = typer.Option(None, help="Kubeconfig (default: the one the run used)."),
    context: str | None = typer.Option(None, help="Context (default: the one the run used)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the restored rollout."),
    timeout: float = typer.Option(180.0, min=1, help="Seconds to wait for the rollout."),
) -> None:
    """Restore the operator Deployment exactly as the run's journal recorded it."""
    try:
        journal = Journal.load(run_dir)
        recorded = journal.cluster
        cluster = connect(
            kubeconfig=kubeconfig or recorded.get("kubeconfig"),
            context=context or recorded.get("context"),
        )
        result = restore(cluster, journal, timeout=timeout, wait=wait)
    except TriageError as e:
        fail(e)
    what = (
        "was already as recorded" if result == "already-restored" else "restored from the journal"
    )
    err_console.print(f"Deployment {journal.namespace}/{journal.name} {what}.")
    raise typer.Exit(int(ExitCode.OK))
