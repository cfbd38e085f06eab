"""triage.settle: a batch is settled when the operator is idle and its memory still."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from triage.rundir import Memory, PodState
from triage.sampling import Observation
from triage.settle import CALM_SECONDS, INTERVAL, STABLE_BYTES, settle

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _obs(
    mib: float, cpu: float | None, *, state: str = "running", oom: bool = False
) -> Observation:
    return Observation(
        Memory(unreclaimable_bytes=int(mib * 2**20)),
        PodState(pod="p", state=state, oom_killed=oom),
        pod_uid="u",
        cpu_seconds=cpu,
    )


def _feed(readings: list[Observation], clock: Clock) -> Iterator[Observation]:
    yield from readings
    while True:
        yield readings[-1]


def _settle(readings: list[Observation], clock: Clock, ceiling: float = 30):
    it = _feed(readings, clock)
    return settle(
        lambda: next(it), ceiling=ceiling, has_cgroup=lambda: True, sleep=clock.sleep,
        clock=clock,
    )  # fmt: skip


def test_waits_for_idle_and_still_memory() -> None:
    clock = Clock()
    # Busy decoding (CPU climbing, memory growing), then idle and flat from the 4th reading.
    seq = [_obs(30, 1.0), _obs(40, 1.2), _obs(48, 1.4), _obs(50, 1.41), _obs(50.01, 1.412),
           _obs(50.01, 1.414)]  # fmt: skip
    s = _settle(seq, clock)
    assert s.reason == "stable"
    assert s.last.memory.unreclaimable_bytes == int(50.01 * 2**20)
    # Idle from 3 intervals in: settled once a whole window has been calm, and no later
    # than one interval after that.
    idle_from = 3 * INTERVAL
    assert idle_from + CALM_SECONDS <= s.seconds <= idle_from + CALM_SECONDS + INTERVAL


def test_a_pause_shorter_than_the_window_is_not_the_end_of_the_work() -> None:
    clock = Clock()
    # Work, a pause of two readings (half a second), more work, then idle.
    cpu = [1.0, 1.2, 1.2005, 1.201, 1.4, 1.6, 1.601, 1.602, 1.603, 1.604, 1.605, 1.606]
    mem = [30, 40, 40, 40, 45, 50, 50, 50, 50, 50, 50, 50]
    s = _settle([_obs(m, c) for m, c in zip(mem, cpu, strict=True)], clock)
    assert s.reason == "stable"
    assert s.last.memory.unreclaimable_bytes == 50 * 2**20
    assert s.seconds >= 5 * INTERVAL + CALM_SECONDS


def test_memory_creeping_under_the_step_tolerance_is_not_still() -> None:
    clock = Clock()
    # Idle CPU, but memory rises by 60% of the tolerance every reading: each step looks
    # still, the window does not.
    step = 0.6 * STABLE_BYTES / 2**20
    seq = [_obs(50 + i * step, 1.0 + i * 0.001) for i in range(200)]
    s = _settle(seq, clock, ceiling=10)
    assert s.reason == "ceiling"


def test_busy_cpu_is_not_settled_even_with_flat_memory() -> None:
    clock = Clock()
    it = _feed([_obs(50, float(i)) for i in range(100)], clock)  # a whole core busy
    s = settle(
        lambda: next(it), ceiling=10, has_cgroup=lambda: True, sleep=clock.sleep, clock=clock
    )
    assert s.reason == "ceiling" and s.seconds >= 10


def test_an_oom_ends_the_settle_at_once() -> None:
    clock = Clock()
    it = _feed([_obs(60, 1.0), _obs(1, 1.5, oom=True)], clock)
    s = settle(
        lambda: next(it), ceiling=30, has_cgroup=lambda: True, sleep=clock.sleep, clock=clock
    )
    assert s.oom and s.seconds <= 1.5


def test_without_the_cgroup_it_waits_the_fixed_time() -> None:
    clock = Clock()
    s = settle(lambda: _obs(50, None), ceiling=30, has_cgroup=lambda: False,
               sleep=clock.sleep, clock=clock)  # fmt: skip
    assert s.reason == "fallback" and s.seconds == pytest.approx(5.0)
