"""How commands speak to the user: one stderr console, and one line per error.

Errors are printed with soft wrapping so a long message stays one line however narrow the
terminal (scripts and tests grep for it), and commands end through `fail`, so each error
maps to its documented exit code in one place.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from triage.errors import TriageError

err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(error: TriageError) -> NoReturn:
    """Print `error` as one red line on stderr and exit with its code."""
    err_console.print(f"[red]error:[/red] {error.message}", markup=True)
    raise typer.Exit(int(error.exit_code)) from error
