"""`triage report RUN_DIR`: render one run directory into report.html, summary.md, summary.json.

The command only parses and validates; loading, analysis and rendering live in triage.report
so that compare and ci reuse exactly the same numbers. Bad input is one line on stderr and
the usage exit code, never a traceback: the usual mistake is pointing at the wrong directory.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from triage.quantity import human_bytes
from triage.report import RunSummary, render_report, summarize
from triage.report.render import verdict
from triage.rundir import load_run, resolve_run_dir

EXAMPLES = """\
[bold]Examples[/bold]

  Render a run in place (report.html, summary.md, summary.json):
    triage report reports/20240501-120000-terminal-sessions-1a2b

  Size the recommended limit for 5,000 sessions and open the result:
    triage report reports/20240501-120000-terminal-sessions-1a2b --target-sessions 5000 --open

  The newest run under a directory, rendered elsewhere:
    triage report reports/demo --out /tmp/review
"""

#: The command's --help text (the docstring would keep its line breaks in `triage --help`).
HELP = (
    "Render a run directory into report.html (one self-contained file), summary.md "
    "(for a PR comment) and summary.json (for machines). Works offline from the run "
    "directory alone."
)


def load_summary(run_dir: Path, *, target_sessions: int | None = None) -> RunSummary:
    """Load and analyse one run directory (or the newest run under a directory)."""
    return summarize(load_run(resolve_run_dir(run_dir)), target_sessions=target_sessions)


def headline(s: RunSummary) -> str:
    """One line for the console: the verdict and the headline number."""
    v = verdict(s)
    colour = {"bad": "red", "good": "green", "warn": "yellow"}[v.level]
    parts = [f"[bold {colour}]{v.title}[/bold {colour}]"]
    if s.fit is not None:
        ci = ""
        if s.fit.slope_half_width is not None:
            ci = f" ± {human_bytes(s.fit.slope_half_width)}"
        parts.append(f"{human_bytes(s.fit.slope)}{ci} per session")
    if s.recommendation is not None:
        parts.append(
            f"recommended limit {s.recommendation.quantity} "
            f"for {s.recommendation.target_sessions:,} sessions"
        )
    return " · ".join(parts)


def register(app: typer.Typer) -> None:
    app.command(name="report", epilog=EXAMPLES, help=HELP)(report_command)


def report_command(
    *,
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="Run directory written by `triage reproduce` "
            "(or a directory of runs: the newest is used).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for the outputs (default: RUN_DIR itself)."),
    ] = None,
    target_sessions: Annotated[
        int | None,
        typer.Option(
            "--target-sessions",
            min=1,
            help="Sessions the recommended limit must hold "
            "(default: 2x the OOM point, or the upstream 4,319 when the run did not OOM).",
        ),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open report.html in a browser afterwards.")
    ] = False,
) -> None:
    summary = load_summary(run_dir, target_sessions=target_sessions)
    written = render_report(summary, out_dir=out or summary.run.path)
    console = Console(highlight=False)
    console.print(headline(summary))
    if summary.why:
        console.print(f"  why: {summary.why}", markup=False)
    for path in (written.html, written.markdown, written.json):
        if path is not None:
            console.print(f"  wrote {path}")
    if open_browser and written.html is not None:
        webbrowser.open(written.html.resolve().as_uri())
