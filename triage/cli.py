"""The `triage` command line: one app, one place that turns errors into exit codes.

Each command lives in `triage.commands.<name>`, parses and validates its options, and raises
a typed `TriageError` when something is wrong; `main()` is the one place that prints it as a
single line on stderr and exits with its documented code (memray's `commands/__init__.py`
main() is the model). An error of any other type is a bug: it keeps its traceback and exits
70. The same `main` serves `kubectl triage ...` through the `kubectl-triage` entry point.
"""

from __future__ import annotations

import sys
import traceback

import click
import typer
from rich.console import Console

from triage.commands import ci, compare, report, reproduce, restore, scenarios
from triage.errors import TriageError
from triage.exitcodes import ExitCode

app = typer.Typer(
    name="triage",
    help="Reproduce, measure and explain Kubernetes operator OOMs on a real cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

for _module in (reproduce, restore, scenarios, report, compare, ci):
    _module.register(app)

#: Errors go to stderr, one line however narrow the terminal: scripts and tests grep them.
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def run(argv: list[str] | None = None, *, prog_name: str = "triage") -> int:
    """Run one command line; returns its exit code (never raises for a TriageError)."""
    try:
        # Not standalone: exceptions come back here instead of click's own handling.
        result = app(args=argv, prog_name=prog_name, standalone_mode=False)
    except TriageError as e:
        err_console.print(f"[red]error:[/red] {e.message}", markup=True)
        return int(e.exit_code)
    except click.exceptions.Abort:
        err_console.print("[red]error:[/red] interrupted", markup=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        return int(ExitCode.USAGE)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]error:[/red] interrupted", markup=True)
        return int(ExitCode.INTERRUPTED)
    except Exception:
        traceback.print_exc()
        err_console.print(
            "[red]internal error[/red] (a bug in triage; the traceback is above)", markup=True
        )
        return int(ExitCode.INTERNAL)
    # A command that returns ends OK; click hands back the code of an explicit typer.Exit.
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


def kubectl_main() -> None:
    """`kubectl triage ...`: kubectl finds `kubectl-triage` on the PATH and runs it."""
    sys.exit(run(sys.argv[1:], prog_name="kubectl triage"))


if __name__ == "__main__":
    main()
