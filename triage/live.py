"""What a person watching `triage reproduce` sees: progress, memory against the limit, OOMs.

A run takes minutes and ends in a deliberate crash; without a live view the only feedback
is a silent terminal and then a directory. The view is fed the same rows that go to
samples.csv, so what is on screen is what the report will show. Without a terminal (CI logs,
a pipe) it prints a line when something changes, not the same post-OOM reading fifteen
times, and the final table fits 80 columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from triage.quantity import format_bytes
from triage.rundir import Outcome, Sample


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}Mi"


def headline_bytes(s: Sample) -> int | None:
    """The memory the view shows first: what the kernel cannot reclaim, else working set."""
    m = s.memory
    return m.unreclaimable_bytes if m.unreclaimable_bytes is not None else m.working_set_bytes


def _bar(value: int | None, limit: int, width: int = 24) -> str:
    if value is None or limit <= 0:
        return ""
    frac = min(value / limit, 1.0)
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
        self._last: Sample | None = None
        self._printed: tuple[object, ...] | None = None
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
        if r is not None:
            table.add_row("sessions", f"{r.sessions}  (namespaces {r.namespaces})")
            value = headline_bytes(r)
            table.add_row("memory", f"{_mib(value)}  {_bar(value, self._limit)}")
            table.add_row("working set", _mib(r.memory.working_set_bytes))
            table.add_row("page cache", _mib(r.memory.cache_bytes))
            table.add_row("restarts", str(r.state.restart_count))
            ooms = r.state.oom_count
            table.add_row("OOMs", f"[bold red]{ooms}[/]" if ooms else "0")
        for note in self._notes[-4:]:
            # Text, not markup: a note may quote a container's log ("[/x]" would raise).
            table.add_row("note", Text(note))
        return Group(self._progress, table)

    def row(self, row: Sample) -> None:
        self._last = row
        if row.kind == "batch":
            self._progress.update(self._task, completed=row.batch)
        if self._live is not None:
            self._live.update(self._render())
            return
        # One line per change: a crash-looping pod read fifteen times is one line, not fifteen.
        mib = (headline_bytes(row) or 0) >> 20
        key = (row.kind, row.batch, row.sessions, mib, row.state.restart_count,
               row.state.oom_count, row.state.state)  # fmt: skip
        if key == self._printed and row.kind != "batch":
            return
        self._printed = key
        oom = " OOMKilled" if row.state.oom_killed else ""
        self._console.print(
            f"{row.kind:>10} {row.batch:>4}  sessions {row.sessions:>6}  "
            f"mem {_mib(headline_bytes(row)):>8}  ws {_mib(row.memory.working_set_bytes):>8}  "
            f"restarts {row.state.restart_count} ooms {row.state.oom_count} {row.state.state}{oom}",
            highlight=False,
        )

    def note(self, text: str) -> None:
        self._notes.append(text)
        if self._live is not None:
            self._live.update(self._render())
        else:
            self._console.print(f"  {text}", highlight=False, markup=False)


def summary_table(
    rows: Sequence[Sample], *, limit_bytes: int, outcome: Outcome, restore: str
) -> Table:
    """The end-of-run table, one line per batch (post-OOM and cold-start rows condensed):
    nine short columns that fit an 80-column CI log without truncated headers."""
    table = Table(title="triage reproduce", show_lines=False, pad_edge=False, padding=(0, 1))
    headers = ("kind", "batch", "sessions", "memory", "ws", "limit", "rst", "oom", "s")
    for col in headers:
        table.add_column(col, justify="left" if col == "kind" else "right", no_wrap=True)
    shown: list[Sample] = []
    for r in rows:
        if shown and r.kind in ("post-oom", "cold-start") and shown[-1].kind == r.kind:
            # Keep the highest reading of a run of post-OOM (or cold-start) samples.
            if (headline_bytes(r) or 0) > (headline_bytes(shown[-1]) or 0):
                shown[-1] = r
            continue
        shown.append(r)
    for r in shown:
        value = headline_bytes(r)
        pct = f"{value / limit_bytes:.0%}" if value is not None and limit_bytes else "-"
        took = (r.batch_seconds or 0) + (r.settle_seconds or 0)
        table.add_row(
            r.kind.replace("post-oom", "post-oom*").replace("cold-start", "cold*"),
            str(r.batch),
            str(r.sessions),
            _mib(value),
            _mib(r.memory.working_set_bytes),
            pct,
            str(r.state.restart_count),
            ("[bold red]" if r.state.oom_killed else "")
            + str(r.state.oom_count)
            + ("[/]" if r.state.oom_killed else ""),
            f"{took:.1f}" if r.batch_seconds is not None else "",
        )
    style = {"oom": "bold red", "completed": "green", "max-batches": "green"}.get(
        outcome.status, "yellow"
    )
    table.caption = (
        f"[{style}]{outcome.status}[/]: {outcome.message}\nrestore: {restore}\n"
        "memory = unreclaimable (anon+shmem), ws = working set; * = highest of those samples"
    )
    return table
