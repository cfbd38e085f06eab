"""What a person watching `triage reproduce` sees: progress, memory against the limit, OOMs.

A run takes minutes and ends in a deliberate crash; without a live view the only feedback
is a silent terminal and then a directory. The view is fed the same rows that go to
samples.csv, so what is on screen is what the report will show. Without a terminal (CI, a
pipe, tests) it degrades to one plain line per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from triage.quantity import format_bytes


def _mib(value: Any) -> str:
    if value in (None, ""):
        return "-"
    return f"{int(value) / 2**20:.1f}Mi"


def _bar(value: Any, limit: int, width: int = 24) -> str:
    if value in (None, "") or limit <= 0:
        return ""
    frac = min(int(value) / limit, 1.0)
    filled = round(frac * width)
    color = "green" if frac < 0.7 else "yellow" if frac < 0.9 else "red"
    return f"[{color}]{'█' * filled}[/][dim]{'░' * (width - filled)}[/] {frac:4.0%}"


class LiveView:
    """Context manager; call `row()` with every samples.csv row and `note()` for events."""

    def __init__(
        self, *, console: Console, run_id: str, scenario: str, limit_bytes: int, batches: int
    ) -> None:
        self._console = console
        self._limit = limit_bytes
        self._interactive = console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(f"{scenario} batches", total=batches)
        self._last: Mapping[str, Any] = {}
        self._notes: list[str] = []
        self._live: Live | None = None
        self._header = f"run {run_id}  limit {format_bytes(limit_bytes)}"

    def __enter__(self) -> LiveView:
        self._console.print(f"[bold]triage reproduce[/bold] {self._header}", highlight=False)
        if self._interactive:
            self._live = Live(self._render(), console=self._console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None

    def _render(self) -> Group:
        r = self._last
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column()
        if r:
            table.add_row(
                "sessions", f"{r.get('sessions', 0)}  (namespaces {r.get('namespaces', 0)})"
            )
            table.add_row(
                "working set",
                f"{_mib(r.get('working_set_bytes'))}  {_bar(r.get('working_set_bytes'), self._limit)}",
            )
            table.add_row("rss", _mib(r.get("rss_bytes")))
            table.add_row("restarts", str(r.get("restart_count", 0)))
            ooms = int(r.get("oom_count") or 0)
            table.add_row("OOMs", f"[bold red]{ooms}[/]" if ooms else "0")
        for note in self._notes[-4:]:
            table.add_row("note", note)
        return Group(self._progress, table)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def row(self, row: Mapping[str, Any]) -> None:
        self._last = row
        if row.get("kind") == "batch":
            self._progress.update(self._task, completed=int(row["batch"]))
        if self._interactive:
            self._refresh()
            return
        oom = " OOMKilled" if row.get("oom_killed") else ""
        self._console.print(
            f"{row.get('kind'):>8} {int(row.get('batch') or 0):>4}  sessions {row.get('sessions', 0):>6}  "
            f"ws {_mib(row.get('working_set_bytes')):>9}  rss {_mib(row.get('rss_bytes')):>9}  "
            f"restarts {row.get('restart_count', 0)}  ooms {row.get('oom_count', 0)}{oom}",
            highlight=False,
        )

    def note(self, text: str) -> None:
        self._notes.append(text)
        if self._interactive:
            self._refresh()
        else:
            self._console.print(f"  {text}", highlight=False, markup=False)


def summary_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    limit_bytes: int,
    outcome: Mapping[str, Any],
    restore: Mapping[str, Any],
) -> Table:
    """The end-of-run table: one line per batch and post-OOM sample, then the verdict."""
    table = Table(title="triage reproduce summary", show_lines=False)
    for col in (
        "kind",
        "batch",
        "sessions",
        "working set",
        "rss",
        "% limit",
        "restarts",
        "OOMs",
        "s/batch",
        "sessions/s",
    ):
        table.add_column(col, justify="right" if col not in ("kind",) else "left")
    for r in rows:
        ws = r.get("working_set_bytes")
        pct = f"{int(ws) / limit_bytes:.0%}" if ws not in (None, "") and limit_bytes else "-"
        table.add_row(
            str(r.get("kind")),
            str(r.get("batch")),
            str(r.get("sessions")),
            _mib(ws),
            _mib(r.get("rss_bytes")),
            pct,
            str(r.get("restart_count")),
            ("[bold red]" if r.get("oom_killed") else "")
            + str(r.get("oom_count"))
            + ("[/]" if r.get("oom_killed") else ""),
            f"{float(r['batch_seconds']):.1f}" if r.get("batch_seconds") not in (None, "") else "",
            f"{float(r['create_rate']):.0f}" if r.get("create_rate") not in (None, "") else "",
        )
    status = outcome.get("status")
    style = {"oom": "bold red", "completed": "green", "max-batches": "green"}.get(
        str(status), "yellow"
    )
    table.caption = (
        f"outcome [{style}]{status}[/] {outcome.get('message', '')}  |  "
        f"restore {restore.get('status')} {restore.get('message', '')}"
    )
    return table
