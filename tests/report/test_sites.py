"""triage.report.sites: heap growth by site, per session, with the path that leads to it."""

from __future__ import annotations

import pytest

from triage.report.sites import stack_path, summarize_heap, why_line
from triage.rundir import Frame, HeapProfile, Site

pytestmark = pytest.mark.unit


def _site(fn: str, size: int, count: int = 1, stack: tuple[Frame, ...] = ()) -> Site:
    return Site(fn, "m.py", 1, size, count, stack)


def test_growth_is_a_diff_by_site_normalised_per_session() -> None:
    path = (Frame("b", "m.py", 1), Frame("loads", "json/__init__.py", 346),
            Frame("decode", "op.py", 20), Frame("watch_loop", "op.py", 7))  # fmt: skip
    first = HeapProfile(100, 10, (_site("a", 50), _site("b", 40), _site("gone", 10)))
    last = HeapProfile(900, 90, (_site("a", 60), _site("b", 500_040, 7, path), _site("new", 300)))
    h = summarize_heap([(1, first), (5, last)], sessions_at={1: 500.0, 5: 2500.0}, slope=400.0)
    assert h is not None
    assert [(g.function, g.delta_bytes) for g in h.growth] == [
        ("b", 500_000),
        ("new", 300),
        ("a", 10),
    ]
    b = h.growth[0]
    assert b.delta_count == 6
    assert b.per_session == pytest.approx(250.0)  # 500,000 bytes over 2,000 sessions
    assert b.share == pytest.approx(250.0 / 400.0)
    # The path to the site: its callers, outermost first, the site itself left out.
    assert b.path == "watch_loop → decode → loads"
    assert [t.function for t in h.top] == ["b", "new", "a"]
    line = why_line(h, 400.0)
    assert line == "250 B of 400 B per session: b (m.py:1) via watch_loop → decode → loads"
    assert summarize_heap([], sessions_at={}, slope=None) is None


def test_why_without_a_fit_still_names_the_site() -> None:
    first = HeapProfile(0, 0, ())
    last = HeapProfile(5000, 1, (_site("leak", 5000),))
    h = summarize_heap([(0, first), (1, last)], sessions_at={0: 0.0, 1: 100.0}, slope=None)
    assert why_line(h, None) == "50 B per session: leak (m.py:1)"
    assert stack_path((), fallback="x") == "x"
