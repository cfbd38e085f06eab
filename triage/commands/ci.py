"""`triage ci`: the scalability regression gate.

Runs the budgeted scenarios at CI size through the reproduce orchestrator, renders each run's
report, checks the numbers against the checked-in budgets (triage/budgets/ci.yaml) and exits
non-zero naming every budget that was exceeded. `--from RUN_DIR` evaluates existing run
directories instead, so the gate itself can be exercised (and a failed CI run re-judged)
without a cluster.

The orchestrator is imported inside the command, never at module level: this module is
imported by the CLI on every invocation, and `triage report` must keep working where the
cluster client libraries are absent or broken.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triage.commands.report import headline, load_summary
from triage.errors import TriageError, UsageError
from triage.exitcodes import ExitCode
from triage.report import (
    BudgetResult,
    Budgets,
    RunSummary,
    evaluate_budgets,
    load_budgets,
    render_gate,
    render_report,
)
from triage.report.junit import write_junit

DEFAULT_BUDGETS = Path(__file__).resolve().parent.parent / "budgets" / "ci.yaml"

EXAMPLES = """\
[bold]Examples[/bold]

  Run every budgeted scenario at CI size on the local cluster:
    triage ci --kubeconfig ~/.kube/triage-local.yaml

  One scenario, small size, outputs elsewhere:
    triage ci --size small --scenario terminal-sessions --out reports/ci

  Judge existing run directories against the budgets, without a cluster:
    triage ci --from reports/20240501-120000-terminal-sessions-1a2b --budgets my.yaml
"""

#: The command's --help text (the docstring would keep its line breaks in `triage --help`).
HELP = (
    "Scalability regression gate: run the budgeted scenarios at CI size, render their "
    "reports, and exit 1 naming every budget exceeded (bytes per session, steady RSS, "
    "peak after restart, burst latency P50/P90/P99)."
)


class Size(enum.StrEnum):
    ci = "ci"
    small = "small"


_STATUS_STYLE = {
    "pass": "[green]pass[/]",
    "fail": "[bold red]EXCEEDED[/]",
    "skipped": "[dim]not measured[/]",
    "missing": "[yellow]no run[/]",
}


def run_scenario(*, scenario: str, size: str, out: Path, kubeconfig: Path | None) -> Path:
    """Run one scenario through the reproduce orchestrator and return its run directory."""
    # Imported here, not at module level: cluster code, see the module docstring.
    from triage import reproduce

    options = reproduce.ReproduceOptions.for_scenario(
        scenario, size=size, out=out, kubeconfig=kubeconfig
    )
    return reproduce.run(options)


def _run_all(
    *, scenarios: Sequence[str], size: str, out: Path, kubeconfig: Path | None
) -> list[Path]:
    run_dirs: list[Path] = []
    for name in scenarios:
        try:
            run_dirs.append(run_scenario(scenario=name, size=size, out=out, kubeconfig=kubeconfig))
        except TriageError as e:
            # Keep the orchestrator's exit code (preflight, restore failed...), name the scenario.
            e.message = f"{name}: {e.message}"
            raise
    return run_dirs


def _print_results(console: Console, results: Sequence[BudgetResult]) -> None:
    table = Table(title="Scalability budgets", title_justify="left")
    table.add_column("scenario")
    table.add_column("budget")
    table.add_column("actual", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("status")
    for r in results:
        table.add_row(
            r.scenario, r.label, r.format(r.actual), r.format(r.limit), _STATUS_STYLE[r.status]
        )
    console.print(table)


def gate(
    *,
    summaries: Sequence[RunSummary],
    budgets: Budgets,
    out: Path,
    console: Console,
    junit: Path | None = None,
) -> int:
    """Render every report, evaluate budgets, write the gate summary; return the exit code."""
    for s in summaries:
        render_report(s, out_dir=s.run.path)
        console.print(f"{s.scenario}: {headline(s)}  [dim]{s.run.path / 'report.html'}[/]")
    results = evaluate_budgets(summaries, budgets)
    written = render_gate(results=results, summaries=summaries, out_dir=out)
    _print_results(console, results)
    console.print(f"  wrote {written.markdown}\n  wrote {written.json}")
    if junit is not None:
        console.print(f"  wrote {write_junit(junit, results)}")
    exceeded = [r for r in results if r.exceeded]
    for r in exceeded:
        console.print(f"[bold red]budget exceeded[/] {r.describe}")
    return int(ExitCode.BUDGET_EXCEEDED if exceeded else ExitCode.OK)


def register(app: typer.Typer) -> None:
    app.command(name="ci", epilog=EXAMPLES, help=HELP)(ci_command)


def ci_command(
    *,
    budgets_file: Annotated[
        Path,
        typer.Option("--budgets", help="Budgets file (YAML).", show_default=False),
    ] = DEFAULT_BUDGETS,
    size: Annotated[
        Size, typer.Option("--size", help="Scenario size: ci (minutes) or small.")
    ] = Size.ci,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for run directories and the gate summary.")
    ] = Path("reports"),
    from_runs: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            metavar="RUN_DIR",
            help="Evaluate this existing run directory instead of running (repeatable); "
            "never touches a cluster.",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario", metavar="NAME", help="Run only this budgeted scenario (repeatable)."
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit", metavar="FILE", help="Also write JUnit XML: one test case per budget."
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            envvar="TRIAGE_KUBECONFIG",
            help="Kubeconfig of the kind or local cluster to run on.",
        ),
    ] = None,
) -> None:
    console = Console(highlight=False)
    budgets = load_budgets(budgets_file)
    if only:
        unknown = sorted(set(only) - set(budgets.scenarios))
        if unknown:
            raise UsageError(
                f"no budgets for scenario(s) {', '.join(unknown)} in {budgets_file}; "
                f"budgeted: {', '.join(budgets.scenarios)}"
            )
        budgets = Budgets(
            scenarios={k: v for k, v in budgets.scenarios.items() if k in only},
            source=budgets.source,
        )

    if from_runs:
        run_dirs = list(from_runs)
    else:
        run_dirs = _run_all(
            scenarios=list(budgets.scenarios), size=size.value, out=out, kubeconfig=kubeconfig
        )
    summaries = [load_summary(d) for d in run_dirs]
    code = gate(summaries=summaries, budgets=budgets, out=out, console=console, junit=junit)
    raise typer.Exit(code)
