"""When a batch is settled: the operator has seen it and its memory has stopped moving.

A fixed sleep after every batch is either too short (the operator is still decoding the
batch when the sample is taken, and the growth lands in the next batch) or too long (the
upstream script slept 5 s per batch; 20 batches spent 100 s doing nothing). Instead the
container's cgroup is read every second: the batch is settled when the operator has gone
idle (its CPU rate fell below a few percent of a core: it has processed what it was sent)
and its unreclaimable memory has stopped moving (two successive readings within a small
tolerance), with a ceiling. Without memory.stat (a distroless image) it falls back to a
fixed wait and the kubelet's stats, which lag by their housekeeping interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from triage.sampling import Observation

#: CPU rate (cores) below which the operator counts as idle.
IDLE_CORES = 0.05
#: Memory movement that counts as "stopped": this many bytes or this fraction, the larger.
STABLE_BYTES = 256 * 1024
STABLE_FRACTION = 0.003
#: Readings in a row that must be idle and stable.
STABLE_READINGS = 2
INTERVAL = 1.0
#: The fixed wait when the cgroup cannot be read.
FALLBACK_SECONDS = 5.0


@dataclass(frozen=True)
class Settled:
    last: Observation
    seconds: float
    #: "stable" | "ceiling" | "oom" | "restarting" | "fallback".
    reason: str

    @property
    def oom(self) -> bool:
        return self.reason == "oom"


def _memory(o: Observation) -> int | None:
    m = o.memory
    return m.unreclaimable_bytes if m.unreclaimable_bytes is not None else m.working_set_bytes


def settle(
    poll: Callable[[], Observation],
    *,
    ceiling: float,
    has_cgroup: Callable[[], bool],
    interval: float = INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Settled:
    """Poll until idle and stable, an OOM, or `ceiling` seconds; never less than one reading."""
    t0 = clock()
    prev: Observation | None = None
    prev_t = t0
    calm = 0
    while True:
        now_obs = poll()
        now_t = clock()
        elapsed = now_t - t0
        if now_obs.state.oom_killed:
            return Settled(now_obs, elapsed, "oom")
        if not has_cgroup():
            # No current source: wait the fixed time, the caller samples the kubelet after.
            rest = min(FALLBACK_SECONDS, ceiling) - elapsed
            if rest > 0:
                sleep(rest)
            return Settled(now_obs, clock() - t0, "fallback")
        if now_obs.state.state != "running":
            calm = 0
        elif prev is not None and _calm(prev, now_obs, max(now_t - prev_t, 1e-3)):
            calm += 1
        else:
            calm = 0
        if calm >= STABLE_READINGS:
            return Settled(now_obs, elapsed, "stable")
        if elapsed >= ceiling:
            reason = "ceiling" if now_obs.state.state == "running" else "restarting"
            return Settled(now_obs, elapsed, reason)
        prev, prev_t = now_obs, now_t
        sleep(interval)


def stable_between(a: int, b: int) -> bool:
    """Two memory readings that count as "stopped moving" (STABLE_BYTES or STABLE_FRACTION)."""
    return abs(b - a) <= max(STABLE_BYTES, STABLE_FRACTION * max(a, b))


def _calm(prev: Observation, now: Observation, seconds: float) -> bool:
    a, b = _memory(prev), _memory(now)
    if a is None or b is None or prev.pod_uid != now.pod_uid:
        return False
    if not stable_between(a, b):
        return False
    if prev.cpu_seconds is None or now.cpu_seconds is None:
        return True  # memory alone, when the CPU file is not there
    return (now.cpu_seconds - prev.cpu_seconds) / seconds < IDLE_CORES
