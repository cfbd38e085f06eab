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


def test_a_slope_under_the_noise_floor_blames_no_site() -> None:
    # A lean operator: the pool filled up between the first and the last profile, which is
    # 189 B "per session", while the fitted slope is 138 B: the why must not name the pool.
    first = HeapProfile(1000, 10, (_site("ssl_wrap", 150_000),))
    last = HeapProfile(1400, 40, (_site("ssl_wrap", 528_000),))
    h = summarize_heap([(1, first), (4, last)], sessions_at={1: 500.0, 4: 2500.0}, slope=138.0)
    line = why_line(h, 138.0)
    assert line is not None and line.startswith("nothing grows per session: 138 B per session")
    assert "150 B noise floor" in line and "ssl_wrap (m.py:1), grew 369 KiB" in line
    # At the floor it is growth again, and the site is named as its cause.
    assert why_line(h, 150.0) == "189 B of 150 B per session: ssl_wrap (m.py:1)"


def _profiles(*sites_by_batch: dict[str, int]) -> list[tuple[int, HeapProfile]]:
    return [
        (b, HeapProfile(sum(s.values()), 0, tuple(_site(fn, n) for fn, n in s.items())))
        for b, s in enumerate(sites_by_batch, start=1)
    ]


def test_a_site_that_levelled_off_is_a_step_not_the_why() -> None:
    # "pool" grows 400 KB in the first half and nothing after; "cache" grows 100 B a session
    # all along. The why is the cache; the pool is marked as what it is.
    heap = _profiles(
        {"pool": 100_000, "cache": 0},
        {"pool": 500_000, "cache": 100_000},
        {"pool": 500_000, "cache": 200_000},
        {"pool": 505_000, "cache": 300_000},
    )
    at = {1: 0.0, 2: 1000.0, 3: 2000.0, 4: 3000.0}
    h = summarize_heap(heap, sessions_at=at, slope=300.0)
    assert h is not None
    pool, cache = h.growth
    assert (pool.function, cache.function) == ("pool", "cache")
    assert pool.levelled and pool.late_per_session == pytest.approx(2.5)  # 5,000 B / 2,000
    assert not cache.levelled and cache.late_per_session == pytest.approx(100.0)
    assert why_line(h, 300.0) == "100 B of 300 B per session: cache (m.py:1)"
    # Only a step: the line says that no site grows with sessions, and which one moved.
    only_pool = summarize_heap(
        [(b, HeapProfile(p.heap_bytes, 0, p.top[:1])) for b, p in heap], sessions_at=at,
        slope=300.0,
    )  # fmt: skip
    line = why_line(only_pool, 300.0)
    assert line is not None and line.startswith("no site grows with sessions: the biggest mover")
    assert "pool (m.py:1), levelled off (396 KiB in all, 2 B per session" in line


def test_with_two_profiles_no_site_is_called_levelled() -> None:
    heap = _profiles({"pool": 0}, {"pool": 400_000})
    h = summarize_heap(heap, sessions_at={1: 0.0, 2: 1000.0}, slope=400.0)
    assert h is not None and h.growth[0].late_per_session is None
    assert (
        not h.growth[0].levelled
        and why_line(h, 400.0) == "400 B of 400 B per session: pool (m.py:1)"
    )
