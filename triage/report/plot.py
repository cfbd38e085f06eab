"""Drawing helpers shared by every figure: one palette, one axis style, PNG data URIs.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`) and rendered by
the Agg canvas: no pyplot global state and no display, so rendering is the same on a laptop,
in CI and inside a test, and two reports can be rendered in one process without interfering.
PNG rather than SVG because matplotlib's SVG embeds glyph paths per text element and grows
large with many markers; a PNG at 2x density stays sharp and small.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from triage.quantity import MI

# One palette for every figure so "working set" is the same colour everywhere.
WS = "#2563eb"
RSS = "#0d9488"
#: The headline memory (unreclaimable) and the parts of the stacked breakdown.
MEASURE = "#0f766e"
HEAP = "#7c3aed"
ANON = "#2dd4bf"
CACHE = "#93c5fd"
REST = "#e2e8f0"
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


def new_axes(
    width: float = 8.0, height: float = 3.6, ncols: int = 1
) -> tuple[MplFigure, list[Axes]]:
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


def encode(fig: MplFigure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI * 2, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mib_axis(ax: Axes) -> None:
    """Ticks on round binary sizes (16, 32, 64 Mi...), the way limits are actually written.

    Call after the data and the y-limits are set: the step depends on the visible range.
    """
    top = ax.get_ylim()[1] / MI
    step = 1.0
    while top / step > 8:
        step *= 2
    ax.yaxis.set_major_locator(MultipleLocator(step * MI))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / MI:,.0f} Mi"))


def int_axis(ax: Axes) -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def legend(ax: Axes, loc: LegendLoc = "best") -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc=loc)


def memory_axes(ax: Axes, *, xlabel: str) -> None:
    """Memory from zero up in binary sizes; sessions on x are written as whole numbers.

    Call after the data is drawn: the y ticks depend on the visible range.
    """
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylim(bottom=0)
    mib_axis(ax)
    if xlabel == SESSIONS:
        int_axis(ax)


def figure(fig_id: str, title: str, caption: str, fig: MplFigure) -> Figure:
    return Figure(id=fig_id, title=title, caption=caption, data_uri=encode(fig), alt=title)


def limit_line(ax: Axes, limit: int | None, *, label: bool = True) -> None:
    if limit is not None:
        ax.axhline(
            limit,
            color=LIMIT,
            linestyle="--",
            linewidth=1.2,
            label=f"limit {limit / MI:,.0f}Mi" if label else None,
        )
