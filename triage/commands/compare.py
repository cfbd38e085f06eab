"""`triage compare BASE_RUN NEW_RUN`: did a change make memory per session worse?

Parses and validates, then hands both run directories to the same analysis `triage report`
uses, so the numbers in a comparison always match the numbers in each run's own report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triage.commands.report import load_summary
from triage.exitcodes import ExitCode
from triage.report import compare_runs, render_compare
from triage.report.compare import DEFAULT_THRESHOLD
from triage.report.render import format_change, format_value

EXAMPLES = """\
[bold]Examples[/bold]

  Compare a PR's run against the main branch's:
    triage compare reports/main-run reports/pr-run

  Tighter threshold, outputs elsewhere:
    triage compare reports/main-run reports/pr-run --threshold 0.05 --out /tmp/cmp

  Fail (exit 1) on a regression, for CI:
    triage compare reports/main-run reports/pr-run --fail-on-regression
"""

#: The command's --help text (the docstring would keep its line breaks in `triage --help`).
HELP = (
    "Compare two run directories side by side: bytes per session (with 95% CI overlap), "
    "peak memory, OOM point, restart peak and latency. Writes compare.html, compare.md "
    "and compare.json and flags regressions beyond the threshold."
)


def register(app: typer.Typer) -> None:
    app.command(name="compare", epilog=EXAMPLES, help=HELP)(compare_command)


def compare_command(
    *,
    base_run: Annotated[
        Path, typer.Argument(metavar="BASE_RUN", help="The reference run directory.")
    ],
    new_run: Annotated[
        Path, typer.Argument(metavar="NEW_RUN", help="The run directory under review.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Directory for the outputs (default: compare-<base>-vs-<new> next to NEW_RUN).",
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.0,
            help="Relative change that counts as a regression (0.10 = 10%).",
        ),
    ] = DEFAULT_THRESHOLD,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression", help="Exit 1 (budget exceeded) when a regression is found."
        ),
    ] = False,
) -> None:
    base = load_summary(base_run)
    new = load_summary(new_run)
    comparison = compare_runs(base=base, new=new, threshold=threshold)
    base_path, new_path = base.run.path, new.run.path
    out_dir = out or new_path.parent / f"compare-{base_path.name}-vs-{new_path.name}"
    written = render_compare(comparison, out_dir=out_dir)

    console = Console(highlight=False)
    table = Table(title=f"{base.run_id} → {new.run_id}", title_justify="left")
    table.add_column("metric")
    for column in ("base", "new", "change"):
        table.add_column(column, justify="right")
    table.add_column("")
    for ch in comparison.changes:
        flag = (
            "[bold red]regression[/]"
            if ch.regression
            else ("[green]improved[/]" if ch.improvement else ch.note)
        )
        table.add_row(
            ch.label,
            format_value(ch.base, ch.unit),
            format_value(ch.new, ch.unit),
            format_change(ch),
            flag,
        )
    console.print(table)
    for path in (written.html, written.markdown, written.json):
        if path is not None:
            console.print(f"  wrote {path}")
    if comparison.regressions:
        names = ", ".join(c.label for c in comparison.regressions)
        console.print(f"[bold red]regression:[/] {names}")
        if fail_on_regression:
            raise typer.Exit(int(ExitCode.BUDGET_EXCEEDED))
