"""Matplotlib figures of a run, as base64 PNG data URIs ready to inline in one HTML file.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`) and rendered by
the Agg canvas: no pyplot global state and no display, so rendering is the same on a laptop,
in CI and inside a test, and two reports can be rendered in one process without interfering.
PNG rather than SVG because matplotlib's SVG embeds glyph paths per text element and grows
large with many markers; a PNG at 2x density stays sharp and small.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from triage.report.analysis import RunSummary
from triage.report.units import MI

# One palette for every figure so "working set" is the same colour everywhere.
WS = "#2563eb"
RSS = "#0d9488"
LIMIT = "#dc2626"
OOM = "#b91c1c"
PEAK = "#d97706"
FIT = "#7c3aed"
MUTED = "#94a3b8"
BASE = "#64748b"
NEW = "#ea580c"
DPI = 100
SESSIONS = "sessions created"
LegendLoc = Literal["best", "lower right", "upper left"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One rendered figure: what the template needs and nothing else."""

    id: str
    title: str
    caption: str
    data_uri: str
    alt: str


def _new(width: float = 8.0, height: float = 3.6, ncols: int = 1) -> tuple[MplFigure, list[Axes]]:
    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="#e2e8f0", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color("#cbd5e1")
        ax.tick_params(colors="#475569", labelsize=9)
    return fig, list(axes)


def _encode(fig: MplFigure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI * 2, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mib_axis(ax: Axes) -> None:
    """Ticks on round binary sizes (16, 32, 64 Mi...), the way limits are actually written.

    Call after the data and the y-limits are set: the step depends on the visible range.
    """
    top = ax.get_ylim()[1] / MI
    step = 1.0
    while top / step > 8:
        step *= 2
    ax.yaxis.set_major_locator(MultipleLocator(step * MI))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / MI:,.0f} Mi"))


def _int_axis(ax: Axes) -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _legend(ax: Axes, loc: LegendLoc = "best") -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc=loc)


def _memory_axes(ax: Axes, *, xlabel: str) -> None:
    """Memory from zero up in binary sizes; sessions on x are written as whole numbers.

    Call after the data is drawn: the y ticks depend on the visible range.
    """
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylim(bottom=0)
    _mib_axis(ax)
    if xlabel == SESSIONS:
        _int_axis(ax)


def _figure(fig_id: str, title: str, caption: str, fig: MplFigure) -> Figure:
    return Figure(id=fig_id, title=title, caption=caption, data_uri=_encode(fig), alt=title)


def _limit_line(ax: Axes, limit: int | None, *, label: bool = True) -> None:
    if limit is not None:
        ax.axhline(
            limit,
            color=LIMIT,
            linestyle="--",
            linewidth=1.2,
            label=f"limit {limit / MI:,.0f}Mi" if label else None,
        )


def memory_vs_sessions(s: RunSummary, *, ax: Axes | None = None, label: str = "") -> Figure | None:
    """Memory per batch against sessions created, with the limit, the OOM and the restart peak."""
    # The sample that saw the kill carries the restarted process's reading; drawn on the line
    # it would look like memory fell, so it gets a marker of its own instead.
    rows = [r for r in s.rows if r.kind in ("baseline", "batch") and not r.oom_killed]
    if not rows:
        return None
    own = ax is None
    fig: MplFigure | None = None
    if ax is None:
        fig, (ax,) = _new()
    x = [r.sessions for r in rows]
    ws = [r.working_set_bytes if r.working_set_bytes is not None else np.nan for r in rows]
    rss = [r.rss_bytes if r.rss_bytes is not None else np.nan for r in rows]
    ax.plot(x, ws, color=WS, marker="o", markersize=3.5, linewidth=1.6, label=f"{label}working set")
    ax.plot(x, rss, color=RSS, linestyle=":", linewidth=1.4, label=f"{label}RSS")
    _limit_line(ax, s.limit_bytes)
    if s.oom_sessions is not None:
        ax.axvline(s.oom_sessions, color=OOM, linewidth=1, alpha=0.5)
        # The kill happened when usage hit the limit, whatever the last scrape read.
        y_oom = s.limit_bytes if s.limit_bytes is not None else s.peak_working_set_bytes
        if y_oom is not None:
            ax.scatter(
                [s.oom_sessions],
                [y_oom],
                marker="X",
                s=80,
                color=OOM,
                zorder=6,
                label=f"OOMKilled @ {s.oom_sessions:,} sessions",
            )
    if s.restart_peak_bytes is not None:
        at = s.oom_sessions if s.oom_sessions is not None else x[-1]
        ax.scatter(
            [at],
            [s.restart_peak_bytes],
            marker="^",
            # Hollow and above the OOM marker: in a crash loop both sit on the limit line.
            s=130,
            facecolors="none",
            edgecolors=PEAK,
            linewidths=1.8,
            zorder=7,
            label=f"restart peak {s.restart_peak_bytes / MI:,.0f}Mi",
        )
    ax.set_ylabel("memory", fontsize=9)
    _memory_axes(ax, xlabel=SESSIONS)
    # Memory climbs from lower left to upper right: the lower right corner is the free one.
    _legend(ax, "lower right")
    if not own or fig is None:
        return None
    return _figure(
        "memory-vs-sessions",
        "Memory against sessions created",
        "Working set (solid) and RSS (dotted) per batch; dashed red is the container limit, "
        "✕ the OOM kill, △ the highest reading after the restart.",
        fig,
    )


def memory_over_time(s: RunSummary) -> Figure | None:
    rows = list(s.rows)
    if not rows:
        return None
    fig, (ax,) = _new(height=3.2)
    t = [r.t_seconds for r in rows]
    ax.plot(
        t,
        [r.working_set_bytes if r.working_set_bytes is not None else np.nan for r in rows],
        color=WS,
        marker="o",
        markersize=3,
        linewidth=1.4,
        label="working set",
    )
    ax.plot(
        t,
        [r.rss_bytes if r.rss_bytes is not None else np.nan for r in rows],
        color=RSS,
        linestyle=":",
        linewidth=1.3,
        label="RSS",
    )
    _limit_line(ax, s.limit_bytes)
    post = [r for r in rows if r.kind == "post-oom"]
    if post:
        ax.axvspan(post[0].t_seconds, post[-1].t_seconds, color=PEAK, alpha=0.08, label="after OOM")
    for r in rows:
        if r.oom_killed:
            ax.axvline(r.t_seconds, color=OOM, linewidth=1, alpha=0.6)
    if s.restart_peak_bytes is not None and s.restart_peak_t is not None:
        ax.scatter(
            [s.restart_peak_t],
            [s.restart_peak_bytes],
            marker="^",
            s=60,
            facecolors="none",
            edgecolors=PEAK,
            linewidths=1.6,
            zorder=5,
            label="restart peak",
        )
    _memory_axes(ax, xlabel="seconds since start")
    _legend(ax)
    return _figure(
        "memory-over-time",
        "Memory over time",
        "The same readings against wall time, including the samples taken after the OOM; "
        "red lines mark OOM kills, the shaded span is the post-OOM observation window.",
        fig,
    )


def fit_figure(s: RunSummary) -> Figure | None:
    fit = s.fit
    if fit is None:
        return None
    fig, (ax,) = _new()
    pts = [r for r in s.rows if r.in_fit]
    xs = np.array([r.sessions for r in pts], dtype=np.float64)
    ys = np.array([getattr(r, s.memory_column) for r in pts], dtype=np.float64)
    x_end = float(xs.max())
    if s.predicted_oom_sessions is not None:
        x_end = max(x_end, min(s.predicted_oom_sessions, 4 * x_end))
    grid = np.linspace(0.0, x_end * 1.05, 200)
    lo, hi = fit.band(grid)
    ax.fill_between(grid, lo, hi, color=FIT, alpha=0.15, linewidth=0, label="95% CI (mean)")
    ax.plot(grid, fit.predict(grid), color=FIT, linewidth=1.6, label="fit")
    ax.scatter(xs, ys, color=WS, s=18, zorder=4, label=f"batches used ({fit.n})")
    # The killed sample's reading belongs to the restarted process; it is not a point on
    # this curve at all, so it is left out rather than shown as "not fitted".
    excluded = [r for r in s.rows if r.kind == "batch" and not r.in_fit and not r.oom_killed]
    if excluded:
        ax.scatter(
            [r.sessions for r in excluded],
            [getattr(r, s.memory_column) or np.nan for r in excluded],
            color=MUTED,
            s=14,
            zorder=3,
            label="after OOM/restart (not fitted)",
        )
    _limit_line(ax, s.limit_bytes)
    if s.predicted_oom_sessions is not None and s.limit_bytes is not None:
        ax.scatter(
            [s.predicted_oom_sessions],
            [s.limit_bytes],
            marker="D",
            s=40,
            color=LIMIT,
            zorder=5,
            label=f"predicted OOM ≈ {s.predicted_oom_sessions:,.0f}",
        )
    text = f"b = {fit.slope / 1024:,.2f} KiB/session"
    if fit.slope_ci is not None:
        text += f"\n95% CI [{fit.slope_ci[0] / 1024:,.2f}, {fit.slope_ci[1] / 1024:,.2f}]"
    if fit.r2 is not None:
        text += f"\nR² = {fit.r2:.3f}"
    ax.text(
        0.02,
        0.97,
        text,
        transform=ax.transAxes,
        va="top",
        fontsize=8.5,
        bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "#cbd5e1"},
    )
    _memory_axes(ax, xlabel=SESSIONS)
    _legend(ax, "lower right")
    return _figure(
        "fit",
        "Fitted growth: memory = a + b x sessions",
        "Ordinary least squares on the batches before the first OOM or restart; the band is "
        "the 95% confidence band of the fitted mean, extended to the predicted OOM point.",
        fig,
    )


def batches_figure(s: RunSummary) -> Figure | None:
    rows = [r for r in s.rows if r.kind == "batch" and r.batch_seconds is not None]
    if not rows:
        return None
    fig, (ax,) = _new(height=3.0)
    batches = [r.batch for r in rows]
    ax.bar(
        batches,
        [r.batch_seconds or 0.0 for r in rows],
        color="#bfdbfe",
        edgecolor=WS,
        label="batch duration (s)",
    )
    ax.set_xlabel("batch", fontsize=9)
    ax.set_ylabel("seconds", fontsize=9)
    rates = [(r.batch, r.create_rate) for r in rows if r.create_rate is not None]
    ax2 = ax.twinx()
    ax2.spines["top"].set_visible(False)
    ax2.tick_params(colors="#475569", labelsize=9)
    if rates:
        ax2.plot(
            [b for b, _ in rates],
            [v for _, v in rates],
            color=NEW,
            marker="o",
            markersize=3,
            linewidth=1.4,
            label="sessions/s",
        )
    ax2.set_ylabel("sessions / s", fontsize=9)
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.set_ylim(top=ax.get_ylim()[1] * 1.18)  # room for the legend above the bars
    ax2.set_ylim(top=ax2.get_ylim()[1] * 1.18)
    ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper center", ncols=2)
    return _figure(
        "batches",
        "Batch durations and creation throughput",
        "Bars: wall time to create each batch; line: sessions created per second in that batch. "
        "A falling rate with a growing heap usually means the operator is GC-bound.",
        fig,
    )


def restarts_figure(s: RunSummary) -> Figure | None:
    rows = list(s.rows)
    if not rows:
        return None
    fig, (ax,) = _new(height=2.6)
    t = [r.t_seconds for r in rows]
    ax.step(
        t, [r.restart_count for r in rows], where="post", color=WS, linewidth=1.6, label="restarts"
    )
    ax.step(
        t,
        [r.oom_count for r in rows],
        where="post",
        color=OOM,
        linewidth=1.6,
        linestyle="--",
        label="cumulative OOMs",
    )
    ax.set_xlabel("seconds since start", fontsize=9)
    ax.set_ylim(
        bottom=0, top=max(1, *(r.restart_count for r in rows), *(r.oom_count for r in rows)) + 0.5
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax)
    return _figure(
        "restarts",
        "Restarts and cumulative OOMs",
        "Container restartCount and the cumulative OOM count (OOMCounter semantics: a lower "
        "bound, restarts not seen as OOMKilled are not claimed).",
        fig,
    )


def memray_figure(s: RunSummary) -> Figure | None:
    if s.memray is None or len(s.memray.batches) < 2:
        return None
    fig, (ax,) = _new(height=2.8)
    b = s.memray.batches
    ax.plot(
        [x.batch for x in b],
        [x.heap_bytes for x in b],
        color=FIT,
        marker="o",
        markersize=3.5,
        linewidth=1.5,
        label="heap (memray)",
    )
    _memory_axes(ax, xlabel="batch")
    _legend(ax)
    return _figure(
        "memray-heap",
        "Python heap per batch (memray)",
        "Bytes held by live Python allocations at each batch's capture; the gap to RSS is the "
        "interpreter, native libraries and fragmentation.",
        fig,
    )


def latency_figure(s: RunSummary) -> Figure | None:
    lat = s.latency
    if lat is None or not lat.durations:
        return None
    fig, (ax, ax2) = _new(width=9.0, height=3.4, ncols=2)
    d = np.array(lat.durations)
    ax.hist(d, bins=min(40, max(5, len(d) // 3)), color="#bfdbfe", edgecolor=WS)
    colors = {50: RSS, 90: PEAK, 99: OOM}
    for p, v in lat.total.values.items():
        ax.axvline(
            v, color=colors.get(p, MUTED), linestyle="--", linewidth=1.2, label=f"P{p} {v:.2f}s"
        )
    ax.set_xlabel("created → running (s)", fontsize=9)
    ax.set_ylabel("sessions", fontsize=9)
    _legend(ax)
    stages = [st for st in lat.stages if st.n]
    if stages:
        y = np.arange(len(stages))
        h = 0.26
        for i, p in enumerate((50, 90, 99)):
            ax2.barh(
                y + (i - 1) * h,
                [st.values.get(p, 0.0) for st in stages],
                height=h,
                color=colors[p],
                alpha=0.85,
                label=f"P{p}",
            )
        ax2.set_yticks(y, [st.stage for st in stages], fontsize=8)
        ax2.invert_yaxis()
        ax2.set_xlabel("seconds", fontsize=9)
        _legend(ax2)
    return _figure(
        "latency",
        "Startup latency",
        "Left: distribution of created → runner Running with nearest-rank percentiles. "
        "Right: the same percentiles per stage, to show where the time goes.",
        fig,
    )


def report_figures(s: RunSummary) -> list[Figure]:
    candidates = (
        memory_vs_sessions(s),
        fit_figure(s),
        memory_over_time(s),
        batches_figure(s),
        restarts_figure(s),
        memray_figure(s),
        latency_figure(s),
    )
    return [f for f in candidates if f is not None]


# --- compare ---------------------------------------------------------------------------


def compare_memory(base: RunSummary, new: RunSummary) -> Figure:
    fig, (ax,) = _new()
    for s, color, name in ((base, BASE, "base"), (new, NEW, "new")):
        rows = [r for r in s.rows if r.kind in ("baseline", "batch") and not r.oom_killed]
        ax.plot(
            [r.sessions for r in rows],
            [r.working_set_bytes if r.working_set_bytes is not None else np.nan for r in rows],
            color=color,
            marker="o",
            markersize=3,
            linewidth=1.6,
            label=f"{name}: working set",
        )
        if s.limit_bytes is not None:
            ax.axhline(s.limit_bytes, color=color, linestyle="--", linewidth=1, alpha=0.8)
        if s.oom_sessions is not None:
            ax.axvline(
                s.oom_sessions,
                color=color,
                linestyle=":",
                linewidth=1.2,
                label=f"{name}: OOM @ {s.oom_sessions:,}",
            )
    _memory_axes(ax, xlabel=SESSIONS)
    _legend(ax, "lower right")
    return _figure(
        "compare-memory",
        "Working set against sessions, both runs",
        "Dashed horizontal lines are each run's limit, dotted verticals each run's OOM.",
        fig,
    )


def compare_fits(base: RunSummary, new: RunSummary) -> Figure | None:
    if base.fit is None and new.fit is None:
        return None
    fig, (ax, ax2) = _new(width=9.0, height=3.4, ncols=2)
    x_end = max([r.sessions for s in (base, new) for r in s.rows if r.in_fit] or [1])
    grid = np.linspace(0.0, float(x_end) * 1.05, 100)
    names, values, errs, colors = [], [], [], []
    for s, color, name in ((base, BASE, "base"), (new, NEW, "new")):
        if s.fit is None:
            continue
        lo, hi = s.fit.band(grid)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.plot(grid, s.fit.predict(grid), color=color, linewidth=1.6, label=f"{name} fit")
        pts = [r for r in s.rows if r.in_fit]
        ax.scatter(
            [r.sessions for r in pts], [getattr(r, s.memory_column) for r in pts], color=color, s=12
        )
        names.append(name)
        values.append(s.fit.slope / 1024)
        errs.append((s.fit.slope_half_width or 0.0) / 1024)
        colors.append(color)
    _memory_axes(ax, xlabel=SESSIONS)
    _legend(ax, "upper left")
    ax2.bar(names, values, yerr=errs, color=colors, alpha=0.85, capsize=8, width=0.5)
    ax2.set_ylabel("KiB per session (95% CI)", fontsize=9)
    return _figure(
        "compare-fit",
        "Bytes per session, both runs",
        "Left: each fit with its 95% confidence band. Right: the slope with its 95% interval; "
        "overlapping intervals mean the difference is within the noise of these runs.",
        fig,
    )


def side_by_side(base: RunSummary, new: RunSummary) -> Figure:
    fig, axes = _new(width=10.0, height=3.6, ncols=2)
    ymax = max(
        [
            v
            for s in (base, new)
            for v in (s.limit_bytes, s.peak_working_set_bytes, s.restart_peak_bytes)
            if v
        ]
        or [MI]
    )
    for ax, s, name in zip(axes, (base, new), ("base", "new"), strict=True):
        memory_vs_sessions(s, ax=ax)
        ax.set_title(f"{name}: {s.run_id}", fontsize=9, color="#334155")
        ax.set_ylim(0, ymax * 1.08)
        _mib_axis(ax)
    return _figure(
        "compare-side-by-side",
        "Side by side",
        "Each run's memory against sessions on the same memory scale.",
        fig,
    )


def compare_figures(base: RunSummary, new: RunSummary) -> list[Figure]:
    candidates: Sequence[Figure | None] = (
        side_by_side(base, new),
        compare_memory(base, new),
        compare_fits(base, new),
    )
    return [f for f in candidates if f is not None]
