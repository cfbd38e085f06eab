"""The `triage` command line: parses and validates, then hands off to the modules that work.

Each command group lives in `triage.commands.<name>` and registers itself on the app, so the
reproduce side (cluster work) and the report side (offline rendering) stay independent.
"""

from __future__ import annotations

import typer

from triage.commands import ci, compare, report, reproduce, restore, scenarios

app = typer.Typer(
    name="triage",
    help="Reproduce, measure and report Kubernetes operator OOMs on a real cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

for _module in (reproduce, restore, scenarios, report, compare, ci):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
