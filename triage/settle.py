"""When a batch is settled: the operator has seen it and its memory has stopped moving.

A fixed sleep after every batch is either too short (the operator is still decoding the
batch when the sample is taken, and the growth lands in the next batch) or too long (the
upstream script slept 5 s per batch; 20 batches spent 100 s doing nothing). Instead the
container's cgroup is read five times a second: the batch is settled when, over the last
CALM_SECONDS, the operator has been idle (its CPU rate below a few percent of a core: it
has processed what it was sent) and its unreclaimable memory has not moved (every reading
in the window within a small tolerance of the last), with a ceiling. The window rolls with
each reading, so the end of the work is seen within a second; two calm one-second readings
in a row (the first version) took two to three seconds after it. A reading goes through one
kept-open exec (podio.ExecStream): under a millisecond of the container's CPU and a few of
the node's, where a new exec per reading cost about 0.1 s of the node's CPU, taken from the
operator being timed. Without memory.stat (a distroless image) it falls back to a fixed
wait and the kubelet's stats, which lag by their housekeeping interval.
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
#: How long the operator must have been idle and its memory still (a rolling window).
CALM_SECONDS = 0.6
#: Readings the window must span, at least: one interval is too few to call anything calm.
CALM_READINGS = 3
INTERVAL = 0.2
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
    window: list[tuple[float, Observation]] = []
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
        if now_obs.state.state != "running" or _memory(now_obs) is None:
            window = []
        else:
            window.append((now_t, now_obs))
            if _calm(window):
                return Settled(now_obs, elapsed, "stable")
        if elapsed >= ceiling:
            reason = "ceiling" if now_obs.state.state == "running" else "restarting"
            return Settled(now_obs, elapsed, reason)
        sleep(interval)


def _calm(window: list[tuple[float, Observation]]) -> bool:
    """Whether the readings of the last CALM_SECONDS show an idle operator and still memory.

    Drops readings older than the window needs from the front of `window` (in place)."""
    now_t, now = window[-1]
    # The newest reading at least CALM_SECONDS old starts the window; older ones are spent.
    while len(window) > 1 and now_t - window[1][0] >= CALM_SECONDS:
        window.pop(0)
    start_t, start = window[0]
    if now_t - start_t < CALM_SECONDS or len(window) < CALM_READINGS:
        return False
    if any(o.pod_uid != now.pod_uid for _, o in window):
        return False
    last = _memory(now)
    assert last is not None
    for _, o in window:
        m = _memory(o)
        if m is None or not stable_between(m, last):
            return False
    if start.cpu_seconds is None or now.cpu_seconds is None:
        return True  # memory alone, when the CPU file is not there
    return (now.cpu_seconds - start.cpu_seconds) / (now_t - start_t) < IDLE_CORES


def stable_between(a: int, b: int) -> bool:
    """Two memory readings that count as "stopped moving" (STABLE_BYTES or STABLE_FRACTION)."""
    return abs(b - a) <= max(STABLE_BYTES, STABLE_FRACTION * max(a, b))
