"""Why memory grows: heap-profile sites, normalised to bytes per session.

A profile says "this site holds 60 MB"; a reviewer needs "this site costs 31 KiB of the
40 KiB each session costs". So each site's growth between the first and the last profiled
batch is divided by the sessions created in between, and set against the fitted slope: the
share of the growth it explains. The first line of "why" is the biggest share with the path
that leads to it (the operator's own code down to the allocation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from triage.quantity import human_bytes
from triage.report.fit import NOISE_FLOOR
from triage.rundir import Frame, HeapProfile, Site

TOP_N = 10
#: Frames shown in a path, from the outermost kept one to the allocation.
PATH_FRAMES = 4
#: A site that grew, over the second half of the profiled sessions, at under this fraction of
#: its rate over the whole span has levelled off: a connection pool filling up, a cache
#: warming, a one-off import. That is a step, not a cost per session, and is never the why.
LEVELLED = 0.25


@dataclass(frozen=True, slots=True)
class SiteGrowth:
    function: str
    file: str
    line: int
    first_bytes: int
    last_bytes: int
    first_count: int
    last_count: int
    stack: tuple[Frame, ...]
    #: Growth divided by the sessions created between the two profiles.
    per_session: float | None
    #: per_session as a fraction of the fitted bytes per session.
    share: float | None
    #: Growth per session from the profile nearest the middle of the span to the last one
    #: (None with fewer than three profiles): what tells a steady cost from a step.
    late_per_session: float | None = None

    @property
    def levelled(self) -> bool:
        """Grew early and then (nearly) stopped: not a cost per session (`LEVELLED`)."""
        return (
            self.per_session is not None
            and self.per_session > 0
            and self.late_per_session is not None
            and self.late_per_session < LEVELLED * self.per_session
        )

    @property
    def delta_bytes(self) -> int:
        return self.last_bytes - self.first_bytes

    @property
    def delta_count(self) -> int:
        return self.last_count - self.first_count

    @property
    def path(self) -> str:
        """The callers that led to the site, outermost first (the site itself left out)."""
        frames = self.stack
        if frames and (frames[0].function, frames[0].file, frames[0].line) == (
            self.function,
            self.file,
            self.line,
        ):
            frames = frames[1:]
        return stack_path(frames, fallback="")


@dataclass(frozen=True, slots=True)
class HeapSummary:
    profiler: str
    #: (batch, heap bytes) of every profiled batch.
    batches: tuple[tuple[int, int], ...]
    first_batch: int
    last_batch: int
    #: Sites of the last profile, largest first.
    top: tuple[Site, ...]
    growth: tuple[SiteGrowth, ...]
    #: Sessions created between the first and the last profile.
    sessions_between: float | None
    #: Whether memray traced Python's allocator (objects) rather than arenas.
    python_allocators: bool | None


def stack_path(stack: Sequence[Frame], *, fallback: str = "") -> str:
    """`watch_loop → decode → loads`: outermost kept frame first, the allocation last."""
    frames = list(stack[:PATH_FRAMES])
    if not frames:
        return fallback
    return " → ".join(f.function for f in reversed(frames))


def summarize_heap(
    heap: Sequence[tuple[int, HeapProfile]],
    *,
    sessions_at: dict[int, float],
    slope: float | None,
    top_n: int = TOP_N,
) -> HeapSummary | None:
    """Top sites of the last profile, and growth by site between the first and the last.

    Growth is a diff by (function, file, line): a site absent from one side counts as zero
    there, because a site that only appears late is exactly the leak one is looking for.
    """
    if not heap:
        return None
    (b0, first), (b1, last) = heap[0], heap[-1]
    top = tuple(sorted(last.top, key=lambda s: s.bytes, reverse=True)[:top_n])
    between = None
    if b0 in sessions_at and b1 in sessions_at:
        between = sessions_at[b1] - sessions_at[b0]
    growth: list[SiteGrowth] = []
    if len(heap) > 1:
        before = {s.key: s for s in first.top}
        after = {s.key: s for s in last.top}
        middle, late = _middle(heap, sessions_at)
        for key in before.keys() | after.keys():
            b, a = before.get(key), after.get(key)
            seen = a if a is not None else b
            assert seen is not None
            delta = (a.bytes if a else 0) - (b.bytes if b else 0)
            if delta <= 0:
                continue
            per_session = delta / between if between else None
            late_per_session = None
            if late:
                m = middle.get(key)
                late_per_session = ((a.bytes if a else 0) - (m.bytes if m else 0)) / late
            growth.append(
                SiteGrowth(
                    function=key[0],
                    file=key[1],
                    line=key[2],
                    first_bytes=b.bytes if b else 0,
                    last_bytes=a.bytes if a else 0,
                    first_count=b.count if b else 0,
                    last_count=a.count if a else 0,
                    stack=seen.stack,
                    per_session=per_session,
                    share=per_session / slope if per_session is not None and slope else None,
                    late_per_session=late_per_session,
                )
            )
        growth.sort(key=lambda g: (-g.delta_bytes, g.function, g.file, g.line))
    return HeapSummary(
        profiler=last.profiler,
        batches=tuple((b, p.heap_bytes) for b, p in heap),
        first_batch=b0,
        last_batch=b1,
        top=top,
        growth=tuple(growth[:top_n]),
        sessions_between=between,
        python_allocators=last.python_allocators,
    )


def _middle(
    heap: Sequence[tuple[int, HeapProfile]], sessions_at: dict[int, float]
) -> tuple[dict[tuple[str, str, int], Site], float | None]:
    """Sites of the inner profile nearest the middle of the span, and the sessions after it."""
    inner = [(b, p) for b, p in heap[1:-1] if b in sessions_at]
    b0, b1 = heap[0][0], heap[-1][0]
    if not inner or b0 not in sessions_at or b1 not in sessions_at:
        return {}, None
    half = (sessions_at[b0] + sessions_at[b1]) / 2
    b, profile = min(inner, key=lambda bp: abs(sessions_at[bp[0]] - half))
    late = sessions_at[b1] - sessions_at[b]
    return {s.key: s for s in profile.top}, late if late > 0 else None


def _where(g: SiteGrowth) -> str:
    return f"{g.function} ({short_file(g.file)}:{g.line})"


def why_line(heap: HeapSummary | None, slope: float | None) -> str | None:
    """ "31 KiB of 40 KiB per session: <site> via <stack>", from the biggest steady grower.

    No site is blamed for growth that is not there (a slope under `NOISE_FLOOR`), nor one
    that levelled off (`LEVELLED`): the line then says so and names the biggest mover as
    what it is.
    """
    if heap is None or not heap.growth:
        return None
    if slope is not None and slope < NOISE_FLOOR:
        g = heap.growth[0]
        return (
            f"nothing grows per session: {human_bytes(slope)} per session fitted, under the "
            f"{human_bytes(NOISE_FLOOR)} noise floor (the heap's biggest mover, {_where(g)}, "
            f"grew {human_bytes(g.delta_bytes)} in all)"
        )
    steady = [g for g in heap.growth if not g.levelled]
    if not steady:
        g = heap.growth[0]
        return (
            f"no site grows with sessions: the biggest mover, {_where(g)}, levelled off "
            f"({human_bytes(g.delta_bytes)} in all, {human_bytes(g.late_per_session or 0)} per "
            "session over the second half)"
        )
    g = steady[0]
    where = _where(g)
    via = f" via {g.path}" if g.path else ""
    if g.per_session is None:
        return f"{human_bytes(g.delta_bytes)} of growth: {where}{via}"
    if slope is None or slope <= 0:
        return f"{human_bytes(g.per_session)} per session: {where}{via}"
    return f"{human_bytes(g.per_session)} of {human_bytes(slope)} per session: {where}{via}"


def short_file(path: str) -> str:
    """`site-packages/kopf/_core/...` rather than the whole venv path."""
    for marker in ("site-packages/", "dist-packages/", "/src/", "/lib/python3"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + len(marker) :] if marker != "/lib/python3" else path[i + 1 :]
    return path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1] if "/" in path else path
