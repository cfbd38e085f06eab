"""`triage scenarios list|show`: what each load scenario creates, before running it.

A scenario decides what the operator is asked to hold in memory; a reviewer reading a report
needs to know exactly that, and a user picking `--scenario` needs the sizes it implies.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from triage import scenario as scenarios_mod

_EPILOG = """[bold]Examples[/bold]

  triage scenarios list

  triage scenarios show production-mix

  triage scenarios show burst --size ci
"""


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="scenarios",
        help="List and show the declarative load scenarios (triage/scenarios/*.yaml).",
        no_args_is_help=True,
        epilog=_EPILOG,
        rich_markup_mode="rich",
    )
    group.command(name="list", epilog=_EPILOG)(list_command)
    group.command(name="show", epilog=_EPILOG)(show_command)
    app.add_typer(group, name="scenarios")


def list_command() -> None:
    """List the scenarios with what a full-size run creates."""
    table = Table(title="triage scenarios")
    for col in ("name", "description", "phase", "batches", "namespaces", "sessions", "pods"):
        table.add_column(
            col, justify="right" if col in ("batches", "namespaces", "sessions", "pods") else "left"
        )
    known = scenarios_mod.scenarios()
    for name, sc in known.items():
        totals = sc.totals()
        table.add_row(
            f"[bold]{name}[/bold]" + (" (default)" if sc.default else ""),
            sc.description,
            sc.session_phase or ("Pending" if sc.sessions_per_ns else "-"),
            str(totals["batches"]),
            str(totals["namespaces"]),
            str(totals["sessions"]),
            str(totals["pods"]),
        )
    Console().print(table)


def show_command(
    name: str = typer.Argument(..., help="Scenario name, see `triage scenarios list`."),
    size: str = typer.Option("full", help="Size to show: full, ci or small."),
) -> None:
    """Show one scenario: its settings, sizes and what a run creates."""
    sc = scenarios_mod.get(name).sized(size)
    totals = sc.totals()
    table = Table(title=f"scenario {sc.name} ({size})", show_header=False)
    table.add_column(style="dim")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("description", sc.description),
        (
            "session phase",
            sc.session_phase
            or (
                "left Pending: the operator starts runners" if sc.sessions_per_ns else "no sessions"
            ),
        ),
        (
            "session shape",
            "production (~5.8 KB with its status)"
            if sc.session_shape == "production"
            else "minimal (a few hundred bytes, bare phase)",
        ),
        ("namespaces", str(totals["namespaces"])),
        ("managed namespaces", str(totals["managed_namespaces"])),
        ("sessions per namespace", "per production ratios" if sc.mix else str(sc.sessions_per_ns)),
        ("batch size (namespaces)", str(sc.batch_size)),
        ("batches", str(totals["batches"])),
        ("sessions", str(totals["sessions"])),
        ("pods", str(totals["pods"])),
    ]
    if sc.churn_rounds:
        rows.append(("status rewrites per batch", str(sc.churn_rounds)))
    if sc.mix:
        rows.append(("production counts", ", ".join(f"{k} {v:,}" for k, v in sc.mix.items())))
        rows.append(("scale", f"{sc.scale:g}"))
    if sc.burst:
        rows.append(
            (
                "latency",
                f"created -> pod created -> scheduled -> running -> ready, timeout {sc.latency_timeout:g}s",
            )
        )
    rows.append(("sizes", "; ".join(f"{k}: {dict(v)}" for k, v in sc.sizes.items()) or "-"))
    rows.append(("file", sc.source))
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
