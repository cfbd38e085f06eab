"""Matplotlib figures of one run (and of two runs compared), drawn from the samples frame.

Each figure answers one question a reviewer asks: how memory grows with sessions (and which
memory: what the kernel cannot reclaim, against the working set), what the memory is made of
batch by batch, where the line meets the limit, what restarted and when, what a cold start
costs, which code the growth comes from, and how long runners take to start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from triage.quantity import MI
from triage.report.plot import (
    ANON,
    BASE,
    CACHE,
    FIT,
    HEAP,
    MEASURE,
    MUTED,
    NEW,
    OOM,
    PEAK,
    REST,
    RSS,
    SESSIONS,
    WS,
    Figure,
    figure,
    legend,
    limit_line,
    memory_axes,
    mib_axis,
    new_axes,
)
from triage.report.sites import short_file
from triage.report.summary import RunSummary


def _curve_rows(s: RunSummary) -> pd.DataFrame:
    # The sample that saw the kill carries the restarted process's reading; drawn on the line
    # it would look like memory fell, so it gets a marker of its own instead.
    f = s.frame
    return f[f["kind"].isin(["baseline", "batch"]) & ~f["oom_killed"].astype(bool)]


def _label(s: RunSummary) -> str:
    return s.measure.label if s.measure else "working set"


def memory_vs_sessions(s: RunSummary, *, ax: Axes | None = None, label: str = "") -> Figure | None:
    """The headline memory and the working set per batch against sessions, with the limit."""
    rows = _curve_rows(s)
    if rows.empty:
        return None
    fig = None
    if ax is None:
        fig, (ax,) = new_axes()
    column = s.memory_column
    ax.plot(rows["sessions"], rows[column], color=MEASURE, marker="o", markersize=3.5,
            linewidth=1.8, label=f"{label}{_label(s)}")  # fmt: skip
    if column != "working_set_bytes":
        ax.plot(rows["sessions"], rows["working_set_bytes"], color=WS, linestyle="--",
                linewidth=1.2, label=f"{label}working set")  # fmt: skip
    limit_line(ax, s.limit_bytes)
    if s.oom_sessions is not None:
        ax.axvline(s.oom_sessions, color=OOM, linewidth=1, alpha=0.5)
        y = s.limit_bytes if s.limit_bytes is not None else s.peak_working_set_bytes
        if y is not None:
            ax.scatter([s.oom_sessions], [y], marker="X", s=80, color=OOM, zorder=6,
                       label=f"OOMKilled @ {s.oom_sessions:,} sessions")  # fmt: skip
    if s.restart_peak_bytes is not None:
        at = s.oom_sessions if s.oom_sessions is not None else float(rows["sessions"].iloc[-1])
        # Hollow and above the OOM marker: in a crash loop both sit on the limit line.
        ax.scatter([at], [s.restart_peak_bytes], marker="^", s=130, facecolors="none",
                   edgecolors=PEAK, linewidths=1.8, zorder=7,
                   label=f"restart peak {s.restart_peak_bytes / MI:,.0f}Mi")  # fmt: skip
    ax.set_ylabel("memory", fontsize=9)
    memory_axes(ax, xlabel=SESSIONS)
    legend(ax, "lower right")
    if fig is None:
        return None
    return figure(
        "memory-vs-sessions",
        "Memory against sessions created",
        f"Solid: {_label(s)} per batch, what the OOM killer acts on; dashed: the working set, "
        "which also counts page cache. Dashed red is the limit, ✕ the OOM kill, △ the highest "
        "reading after the restart.",
        fig,
    )


def breakdown_figure(s: RunSummary) -> Figure | None:
    """Stacked per batch: heap / other anonymous / file cache / the rest of the usage."""
    f = s.frame
    rows = f[f["kind"].isin(["baseline", "batch"]) & ~f["oom_killed"].astype(bool)]
    anon = rows["unreclaimable_bytes"].fillna(rows["rss_bytes"])
    if rows.empty or anon.isna().all():
        return None
    heap = rows["heap_bytes"].clip(upper=anon)
    other = anon - heap.fillna(0)
    cache = rows["cache_bytes"]
    top = rows["usage_bytes"].fillna(rows["working_set_bytes"])
    rest = (top - anon - cache.fillna(0)).clip(lower=0)
    x = np.arange(len(rows))
    fig, (ax,) = new_axes(height=3.4)
    bottom = np.zeros(len(rows))
    parts = [
        (heap, HEAP, "heap (profiler)"),
        (other, ANON, "other anonymous" if heap.notna().any() else "anonymous"),
        (cache, CACHE, "file cache"),
        (rest, REST, "the rest (kernel, inactive)"),
    ]
    for values, color, name in parts:
        if values.notna().any():
            v = values.fillna(0).to_numpy(dtype=float)
            ax.bar(x, v, bottom=bottom, color=color, edgecolor="white", linewidth=0.5, label=name)
            bottom = bottom + v
    limit_line(ax, s.limit_bytes)
    ax.set_xticks(x, [str(int(b)) for b in rows["batch"]], fontsize=8)
    memory_axes(ax, xlabel="batch")
    legend(ax, "upper left")
    unknown = [n for v, _, n in parts if v.isna().all()]
    note = f" Not measured on this cluster: {', '.join(unknown)}." if unknown else ""
    return figure(
        "breakdown",
        "What the memory is made of, per batch",
        "Heap is the profiler's live heap; other anonymous is the rest of the memory the kernel "
        "cannot reclaim; file cache is reclaimable page cache (a capture file lands here); the "
        f"rest is usage above both.{note}",
        fig,
    )


def fit_figure(s: RunSummary) -> Figure | None:
    fit = s.fit
    if fit is None:
        return None
    fig, (ax,) = new_axes()
    f = s.frame
    pts = f[f["in_fit"]]
    xs = pts["sessions"].to_numpy(dtype=float)
    x_end = float(xs.max())
    if s.predicted_oom_sessions is not None:
        x_end = max(x_end, min(s.predicted_oom_sessions, 4 * x_end))
    grid = np.linspace(0.0, x_end * 1.05, 200)
    lo, hi = fit.band(grid)
    ax.fill_between(grid, lo, hi, color=FIT, alpha=0.15, linewidth=0, label="95% CI (mean)")
    ax.plot(grid, fit.predict(grid), color=FIT, linewidth=1.6, label="fit")
    ax.scatter(xs, pts[s.memory_column], color=MEASURE, s=18, zorder=4,
               label=f"batches used ({fit.n})")  # fmt: skip
    excluded = f[(f["kind"] == "batch") & ~f["in_fit"] & ~f["oom_killed"].astype(bool)]
    if not excluded.empty:
        ax.scatter(excluded["sessions"], excluded[s.memory_column], color=MUTED, s=14, zorder=3,
                   label="after OOM/restart (not fitted)")  # fmt: skip
    limit_line(ax, s.limit_bytes)
    if s.predicted_oom_sessions is not None and s.limit_bytes is not None:
        ax.scatter([s.predicted_oom_sessions], [s.limit_bytes], marker="D", s=40, color=OOM,
                   zorder=5, label=f"predicted OOM ≈ {s.predicted_oom_sessions:,.0f}")  # fmt: skip
    text = f"b = {fit.slope / 1024:,.2f} KiB/session"
    if fit.slope_ci is not None:
        text += f"\n95% CI [{fit.slope_ci[0] / 1024:,.2f}, {fit.slope_ci[1] / 1024:,.2f}]"
    if fit.r2 is not None:
        text += f"\nR² = {fit.r2:.3f}"
    ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=8.5,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "#cbd5e1"})  # fmt: skip
    memory_axes(ax, xlabel=SESSIONS)
    legend(ax, "lower right")
    fixed = ""
    if s.profiler_fixed_cost:
        fixed = (
            f" The predicted OOM point leaves out the profiler's fixed "
            f"{s.profiler_fixed_cost / MI:,.1f} Mi."
        )
    return figure(
        "fit",
        f"Fitted growth of {_label(s)}: a + b x sessions",
        "Ordinary least squares on the batches before the first OOM or restart; the band is "
        f"the 95% confidence band of the fitted mean, extended to the predicted OOM point.{fixed}",
        fig,
    )


def _of_samples(draw: Callable[[RunSummary], Figure]) -> Callable[[RunSummary], Figure | None]:
    """A figure drawn from every sample: there is none for a run that has no samples."""

    @functools.wraps(draw)
    def drawn(s: RunSummary) -> Figure | None:
        return None if s.frame.empty else draw(s)

    return drawn


@_of_samples
def memory_over_time(s: RunSummary) -> Figure:
    f = s.frame
    fig, (ax,) = new_axes(height=3.2)
    ax.plot(f["t_seconds"], f[s.memory_column], color=MEASURE, marker="o", markersize=3,
            linewidth=1.4, label=_label(s))  # fmt: skip
    if s.memory_column != "working_set_bytes":
        ax.plot(f["t_seconds"], f["working_set_bytes"], color=WS, linestyle="--", linewidth=1.1,
                label="working set")  # fmt: skip
    limit_line(ax, s.limit_bytes)
    for kind, color, name in (("post-oom", PEAK, "after OOM"), ("cold-start", RSS, "cold start")):
        span = f[f["kind"] == kind]
        if not span.empty:
            ax.axvspan(span["t_seconds"].min(), span["t_seconds"].max(), color=color, alpha=0.1,
                       label=name)  # fmt: skip
    for t in f[f["oom_killed"].astype(bool)]["t_seconds"]:
        ax.axvline(t, color=OOM, linewidth=1, alpha=0.6)
    memory_axes(ax, xlabel="seconds since start")
    legend(ax)
    return figure(
        "memory-over-time",
        "Memory over time",
        "Every sample against wall time, including those after an OOM and during a cold start "
        "(shaded); red lines mark OOM kills.",
        fig,
    )


def batches_figure(s: RunSummary) -> Figure | None:
    f = s.frame
    rows = f[(f["kind"] == "batch") & f["batch_seconds"].notna()]
    if rows.empty:
        return None
    fig, (ax,) = new_axes(height=3.0)
    ax.bar(rows["batch"], rows["batch_seconds"], color="#bfdbfe", edgecolor=WS,
           label="load (s)")  # fmt: skip
    if rows["settle_seconds"].notna().any():
        ax.bar(rows["batch"], rows["settle_seconds"].fillna(0), bottom=rows["batch_seconds"],
               color="#fde68a", edgecolor=PEAK, label="settle (s)")  # fmt: skip
    ax.set_xlabel("batch", fontsize=9)
    ax.set_ylabel("seconds", fontsize=9)
    ax2 = ax.twinx()
    ax2.spines["top"].set_visible(False)
    ax2.tick_params(colors="#475569", labelsize=9)
    rates = rows.dropna(subset=["create_rate"])
    if not rates.empty:
        ax2.plot(rates["batch"], rates["create_rate"], color=NEW, marker="o", markersize=3,
                 linewidth=1.4, label="sessions/s")  # fmt: skip
    ax2.set_ylabel("sessions / s", fontsize=9)
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax2.set_ylim(top=ax2.get_ylim()[1] * 1.2)
    ax.legend(h1 + h2, l1 + l2, fontsize=8, frameon=False, loc="upper center", ncols=3)
    return figure(
        "batches",
        "Time per batch and creation throughput",
        "Bars: seconds to create each batch and to settle after it (the operator has seen the "
        "batch and its memory stopped moving); line: sessions created per second.",
        fig,
    )


@_of_samples
def restarts_figure(s: RunSummary) -> Figure:
    f = s.frame
    fig, (ax,) = new_axes(height=2.6)
    ax.step(f["t_seconds"], f["restart_count"], where="post", color=WS, linewidth=1.6,
            label="restarts")  # fmt: skip
    ax.step(f["t_seconds"], f["oom_count"], where="post", color=OOM, linewidth=1.6,
            linestyle="--", label="cumulative OOMs")  # fmt: skip
    ax.set_xlabel("seconds since start", fontsize=9)
    ax.set_ylim(bottom=0, top=max(1, f["restart_count"].max(), f["oom_count"].max()) + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    legend(ax)
    return figure(
        "restarts",
        "Restarts and cumulative OOMs",
        "Container restartCount and the cumulative OOM count (a lower bound: restarts not seen "
        "as OOMKilled are not claimed). A cold start restarts the container in place: that "
        "restart is triage's, and the summary does not count it.",
        fig,
    )


def heap_figure(s: RunSummary) -> Figure | None:
    if s.heap is None or len(s.heap.batches) < 2:
        return None
    fig, (ax,) = new_axes(height=2.8)
    batches = [b for b, _ in s.heap.batches]
    ax.plot(batches, [h for _, h in s.heap.batches], color=HEAP, marker="o", markersize=3.5,
            linewidth=1.5, label=f"heap ({s.heap.profiler})")  # fmt: skip
    rows = s.frame[s.frame["batch"].isin(batches) & s.frame["kind"].isin(["baseline", "batch"])]
    ax.plot(rows["batch"], rows[s.memory_column], color=MEASURE, linestyle=":", linewidth=1.3,
            label=_label(s))  # fmt: skip
    memory_axes(ax, xlabel="batch")
    legend(ax)
    return figure(
        "heap",
        f"Live heap per batch ({s.heap.profiler})",
        "Bytes held by live allocations at each batch's profile, beside the container's "
        "unreclaimable memory; the gap is the interpreter or runtime, native libraries and "
        "fragmentation.",
        fig,
    )


def sites_figure(s: RunSummary) -> Figure | None:
    heap = s.heap
    if heap is None or not heap.growth or heap.growth[0].per_session is None:
        return None
    growth = [g for g in heap.growth[:8] if g.per_session is not None]
    fig, (ax,) = new_axes(height=0.45 * len(growth) + 1.2)
    y = np.arange(len(growth))
    values = [float(g.per_session or 0) for g in growth]
    ax.barh(y, values, color=HEAP, alpha=0.85)
    labels = [f"{g.function} ({short_file(g.file)}:{g.line})"[:70] for g in growth]
    ax.set_yticks(y, labels, fontsize=7.5)
    ax.invert_yaxis()
    for i, g in enumerate(growth):
        if g.share is not None:
            ax.text(values[i], i, f"  {g.share:.0%}", va="center", fontsize=8, color="#334155")
    ax.set_xlabel("bytes per session", fontsize=9)
    return figure(
        "sites",
        "Where the bytes per session come from",
        "Growth of each allocation site between the first and the last profile, divided by the "
        "sessions created in between; the percentage is its share of the fitted slope.",
        fig,
    )


def cold_start_figure(s: RunSummary) -> Figure | None:
    cs = s.cold_start
    rows = s.frame[s.frame["kind"] == "cold-start"]
    if cs is None or rows.empty:
        return None
    fig, (ax,) = new_axes(height=3.0)
    # Time from the new container's start, which the ready line is measured from too (runs
    # that did not record it: from the first sample of the new pod).
    t0 = cs.started_t if cs.started_t is not None else float(rows["t_seconds"].min())
    ax.plot(rows["t_seconds"] - t0, rows[s.memory_column], color=MEASURE, marker="o",
            markersize=3, linewidth=1.5, label=_label(s))  # fmt: skip
    if cs.steady_bytes is not None:
        ax.axhline(cs.steady_bytes, color=BASE, linestyle=":", linewidth=1.2,
                   label=f"steady before restart {cs.steady_bytes / MI:,.1f}Mi")  # fmt: skip
    if cs.ready_seconds is not None:
        ax.axvline(cs.ready_seconds, color=RSS, linewidth=1, label=f"ready {cs.ready_seconds:.1f}s")
    limit_line(ax, s.limit_bytes)
    memory_axes(ax, xlabel="seconds since the new container started")
    legend(ax)
    return figure(
        "cold-start",
        f"Cold start with {cs.sessions:,} sessions",
        "The operator restarted with every object already there: memory while it lists and "
        "syncs, against the steady state the batches measured.",
        fig,
    )


def latency_figure(s: RunSummary) -> Figure | None:
    lat = s.latency
    if lat is None or not lat.durations:
        return None
    fig, (ax, ax2) = new_axes(width=9.0, height=3.4, ncols=2)
    d = np.array(lat.durations)
    ax.hist(d, bins=min(40, max(5, len(d) // 3)), color="#bfdbfe", edgecolor=WS)
    colors = {50: RSS, 90: PEAK, 99: OOM}
    for p, v in lat.total.values.items():
        ax.axvline(v, color=colors.get(p, MUTED), linestyle="--", linewidth=1.2,
                   label=f"P{p} {v:.2f}s")  # fmt: skip
    ax.set_xlabel("created → running (s)", fontsize=9)
    ax.set_ylabel("sessions", fontsize=9)
    legend(ax)
    stages = [st for st in lat.stages if st.n]
    if stages:
        y = np.arange(len(stages))
        h = 0.26
        for i, p in enumerate((50, 90, 99)):
            ax2.barh(y + (i - 1) * h, [st.values.get(p, 0.0) for st in stages], height=h,
                     color=colors[p], alpha=0.85, label=f"P{p}")  # fmt: skip
        ax2.set_yticks(y, [st.stage for st in stages], fontsize=8)
        ax2.invert_yaxis()
        ax2.set_xlabel("seconds", fontsize=9)
        legend(ax2)
    return figure(
        "latency",
        "Start-up latency",
        "Left: created → runner Running with nearest-rank percentiles. Right: the same "
        "percentiles per stage, to show where the time goes.",
        fig,
    )


def report_figures(s: RunSummary) -> list[Figure]:
    candidates = (
        memory_vs_sessions(s),
        breakdown_figure(s),
        fit_figure(s),
        sites_figure(s),
        memory_over_time(s),
        cold_start_figure(s),
        batches_figure(s),
        restarts_figure(s),
        heap_figure(s),
        latency_figure(s),
    )
    return [f for f in candidates if f is not None]


# --- compare ---------------------------------------------------------------------------


def compare_memory(base: RunSummary, new: RunSummary) -> Figure:
    """Both runs' headline memory on one axis, joined on sessions created."""
    frames = []
    for s, name in ((base, "base"), (new, "new")):
        rows = _curve_rows(s)[["sessions", s.memory_column]]
        frames.append(rows.rename(columns={s.memory_column: name}).set_index("sessions"))
    joined = pd.concat(frames, axis=1).sort_index()
    fig, (ax,) = new_axes()
    for s, color, name in ((base, BASE, "base"), (new, NEW, "new")):
        series = joined[name].dropna()
        ax.plot(series.index, series.to_numpy(), color=color, marker="o", markersize=3,
                linewidth=1.6, label=f"{name}: {_label(s)}")  # fmt: skip
        if s.limit_bytes is not None:
            ax.axhline(s.limit_bytes, color=color, linestyle="--", linewidth=1, alpha=0.8)
        if s.oom_sessions is not None:
            ax.axvline(s.oom_sessions, color=color, linestyle=":", linewidth=1.2,
                       label=f"{name}: OOM @ {s.oom_sessions:,}")  # fmt: skip
    memory_axes(ax, xlabel=SESSIONS)
    legend(ax, "lower right")
    return figure(
        "compare-memory",
        "Memory against sessions, both runs",
        "Each run's headline memory per batch; dashed horizontal lines are each run's limit, "
        "dotted verticals each run's OOM.",
        fig,
    )


def compare_fits(base: RunSummary, new: RunSummary) -> Figure | None:
    if base.fit is None and new.fit is None:
        return None
    fig, (ax, ax2) = new_axes(width=9.0, height=3.4, ncols=2)
    x_end = max([float(s.frame[s.frame["in_fit"]]["sessions"].max() or 1) for s in (base, new)])
    grid = np.linspace(0.0, x_end * 1.05, 100)
    names, values, errs, colors = [], [], [], []
    for s, color, name in ((base, BASE, "base"), (new, NEW, "new")):
        if s.fit is None:
            continue
        lo, hi = s.fit.band(grid)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.plot(grid, s.fit.predict(grid), color=color, linewidth=1.6, label=f"{name} fit")
        pts = s.frame[s.frame["in_fit"]]
        ax.scatter(pts["sessions"], pts[s.memory_column], color=color, s=12)
        names.append(name)
        values.append(s.fit.slope / 1024)
        errs.append((s.fit.slope_half_width or 0.0) / 1024)
        colors.append(color)
    memory_axes(ax, xlabel=SESSIONS)
    legend(ax, "upper left")
    ax2.bar(names, values, yerr=errs, color=colors, alpha=0.85, capsize=8, width=0.5)
    ax2.set_ylabel("KiB per session (95% CI)", fontsize=9)
    return figure(
        "compare-fit",
        "Bytes per session, both runs",
        "Left: each fit with its 95% confidence band. Right: the slope with its 95% interval; "
        "overlapping intervals mean the difference is within the noise of these runs.",
        fig,
    )


def side_by_side(base: RunSummary, new: RunSummary) -> Figure:
    fig, axes = new_axes(width=10.0, height=3.6, ncols=2)
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
        mib_axis(ax)
    return figure(
        "compare-side-by-side",
        "Side by side",
        "Each run's memory against sessions on the same memory scale.",
        fig,
    )


def compare_figures(base: RunSummary, new: RunSummary) -> list[Figure]:
    candidates = (side_by_side(base, new), compare_memory(base, new), compare_fits(base, new))
    return [f for f in candidates if f is not None]
