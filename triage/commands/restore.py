"""`triage restore RUN_DIR`: put the operator Deployment back from a run's journal.

A run restores on its own when it ends, is interrupted or gets SIGTERM; this command is for
the cases it could not (kill -9, a lost machine). It needs nothing but the run directory,
takes back only what triage changed (another writer's changes stay), deletes what triage
created beside the Deployment, and releases the run's lock on the cluster. Running it twice
is harmless.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from agentic_operator.resources import LEASES
from triage import lock
from triage.cluster import connect
from triage.journal import Journal
from triage.restore import restore

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
    """Restore the operator Deployment as the run's journal recorded it, and release its lock."""
    journal = Journal.load(run_dir)
    recorded = journal.cluster
    cluster = connect(
        kubeconfig=kubeconfig or recorded.get("kubeconfig"),
        context=context or recorded.get("context"),
    )
    result = restore(cluster, journal, timeout=timeout, wait=wait)
    out = Console(stderr=True, highlight=False)
    out.print(f"Deployment {journal.namespace}/{journal.name}: {result.message}.")
    held = journal.lock
    if held is not None:
        released = lock.release(
            cluster.client, LEASES.path(held["namespace"], held["name"]), journal.run_id
        )
        journal.record("unlock", released=released, by="triage restore")
        if released:
            out.print(f"released the run lock {held['namespace']}/{held['name']}.")
