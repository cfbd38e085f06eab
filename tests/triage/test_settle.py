"""triage.settle: a batch is settled when the operator is idle and its memory still."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from triage.rundir import Memory, PodState
from triage.sampling import Observation
from triage.settle import settle

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


def test_waits_for_idle_and_still_memory() -> None:
    clock = Clock()
    # Busy decoding (CPU climbing, memory growing), then idle and flat.
    seq = [_obs(30, 1.0), _obs(40, 1.9), _obs(48, 2.8), _obs(50, 2.81), _obs(50.01, 2.82),
           _obs(50.01, 2.83)]  # fmt: skip
    it = _feed(seq, clock)
    s = settle(
        lambda: next(it), ceiling=30, has_cgroup=lambda: True, sleep=clock.sleep, clock=clock
    )
    assert s.reason == "stable"
    assert s.last.memory.unreclaimable_bytes == int(50.01 * 2**20)
    assert 3.0 <= s.seconds <= 5.0


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
