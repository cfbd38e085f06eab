"""What profiling with memray costs a run, and how triage keeps its figures honest about it.

Two costs, measured by bench/memray_modes.py:

1. A fixed cost in the operator's own memory: memray's extension and the launcher are loaded
   before the first session (a few MiB of anonymous memory). The per-session slope is the
   same with and without memray (the benchmark checks it; memray streams records to its
   file and keeps nothing per allocation in the process), so the whole difference is an
   intercept. Left alone it moves the OOM earlier by fixed/slope sessions. triage accounts
   for it in one of two ways (`FixedCost`):
   - preferred, when triage sets the limit (it does: --mem-limit): run the profiled pod with
     the limit raised by exactly the fixed cost (`FixedCost.limit_for`), so the operator's
     own memory has the budget it would have had unprofiled and the OOM lands at the same
     session count;
   - when the limit must stay as given: report the OOM point corrected by fixed/slope
     (`FixedCost.corrected_sessions`), next to the observed one.
   The fixed cost comes from two readings of the operator's anonymous memory (RssAnon of
   its PID 1, or the cgroup's anon) at the same state, before any run load: one without the
   launcher, one with it (`estimate_fixed_cost`); several samples each, medians compared.
   Without an in-cluster reading, the benchmark's figure for the same Python and memray
   versions stands in.

2. Capture volume on disk. The capture lives in an emptyDir; an emptyDir over its sizeLimit
   gets the pod evicted (so the capture volume has none), and so does a pod over its
   ephemeral-storage limits or a node short of disk, each of which would end the run for a
   reason that is not the operator's and take the captures with the pod.
   memray writes a record per allocation and per free, so the file grows with the work done
   (sessions decoded), not with what is live; it grows the file in steps of 10%, never
   shrinks it, and a killed process leaves it uncompressed. Every container start writes a
   new capture (the killed one must survive), and a restarted operator re-lists every
   session, so each start costs about a full capture again. `CaptureBudget` turns the
   benchmark's bytes per session into a sizeLimit for a planned run.

The emptyDir must be disk-backed (no `medium: Memory`): on tmpfs the capture would be
charged to the pod's memory and would itself move the OOM.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1024 * 1024
#: 1.4826 x MAD estimates a standard deviation from the median absolute deviation.
_MAD_TO_SD = 1.4826


def _as_list(readings: int | float | Sequence[int | float]) -> list[float]:
    values = (
        [float(readings)] if isinstance(readings, int | float) else [float(r) for r in readings]
    )
    if not values:
        raise ValueError("no readings")
    return values


def _spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return _MAD_TO_SD * statistics.median(abs(v - med) for v in values)


@dataclass(frozen=True)
class FixedCost:
    """memray's constant addition to the operator's memory, in bytes (with its noise)."""

    bytes: int
    #: One standard deviation of the estimate (0 from single readings).
    spread: int

    def limit_for(self, limit_bytes: int) -> int:
        """The limit of a profiled run that leaves the operator its unprofiled budget.

        Rounded up to a whole MiB, the way a limit is usually written.
        """
        return math.ceil((limit_bytes + max(0, self.bytes)) / MIB) * MIB

    def corrected_sessions(self, observed_sessions: float, *, slope_bytes: float) -> float:
        """Sessions at OOM had memray not been there: the observed point moved by fixed/slope.

        `slope_bytes` is the run's own bytes per session (from its memory samples); the
        profiled process reached the limit fixed/slope sessions early.
        """
        if slope_bytes <= 0:
            raise ValueError("slope_bytes must be positive")
        return observed_sessions + self.bytes / slope_bytes


def estimate_fixed_cost(
    before: int | float | Sequence[int | float], after: int | float | Sequence[int | float]
) -> FixedCost:
    """The fixed cost from readings without (`before`) and with (`after`) the profiler.

    Readings are anonymous bytes at the same state of the program (same point in start-up,
    no run load yet); with several of each, medians are compared, so one outlier sample (a
    GC pass, a burst of requests) does not move the figure.
    """
    b, a = _as_list(before), _as_list(after)
    cost = statistics.median(a) - statistics.median(b)
    spread = math.hypot(_spread(b), _spread(a))
    return FixedCost(bytes=round(cost), spread=round(spread))


@dataclass(frozen=True)
class CaptureBudget:
    """Capture allowance for a profiled run, from the capture bytes per session.

    size_limit = floor + margin x starts x (start_bytes + bytes_per_session x sessions
                                            + idle_bytes_per_s x duration_s)

    `margin` covers memray's 10% growth steps, an operator that does more per session than
    the benchmark's two decodes (reconciles, status writes, relists) and run-to-run noise;
    `starts` is the container starts the run lets happen (the one that is OOM-killed and
    the one after it, by default: each re-lists every session into a new capture); the
    floor keeps a small run's limit far from the eviction threshold.
    """

    bytes_per_session: float
    start_bytes: float = 0.0
    idle_bytes_per_s: float = 0.0
    margin: float = 2.0
    floor_bytes: int = 64 * MIB

    def size_limit(self, sessions: int, *, duration_s: float = 0.0, starts: int = 2) -> int:
        """Bytes, rounded up to a whole MiB."""
        per_start = (
            self.start_bytes
            + self.bytes_per_session * max(0, sessions)
            + self.idle_bytes_per_s * max(0.0, duration_s)
        )
        total = self.floor_bytes + self.margin * max(1, starts) * per_start
        return math.ceil(total / MIB) * MIB

    def formula(self) -> str:
        return (
            f"{self.floor_bytes / MIB:.0f} MiB + {self.margin:g} x starts x "
            f"({self.start_bytes / 1024:.0f} KiB + {self.bytes_per_session:.0f} B x sessions "
            f"+ {self.idle_bytes_per_s:.0f} B/s x seconds)"
        )


def capture_stop(
    *,
    batch: int,
    used: int,
    step: int,
    pod_allowance: int | None,
    node_available: int | None,
    node_reserve: int | None,
    headroom_batches: int = 2,
) -> str | None:
    """Why the load must stop after `batch` for the captures' sake, or None while they fit.

    `used` is what the captures hold now, `step` the most they grew in one batch so far;
    `headroom_batches` more such batches must fit under the pod's allowance (when its
    ephemeral-storage limits count the capture volume) and leave the node's filesystem
    `node_reserve` bytes clear. An unknown figure (None) never stops a run.
    """
    need = headroom_batches * step
    if pod_allowance is not None and used + need > pod_allowance:
        return (
            f"memray's captures hold {used / MIB:.0f} MiB after batch {batch} and grow up to "
            f"{step / MIB:.0f} MiB a batch: {headroom_batches} more would pass the "
            f"{pod_allowance / MIB:.0f} MiB the pod's ephemeral-storage limits allow them and "
            "get it evicted; the load stopped here"
        )
    if (
        node_available is not None
        and node_reserve is not None
        and node_available - need < node_reserve
    ):
        return (
            f"memray's captures grow up to {step / MIB:.0f} MiB a batch and the node's "
            f"filesystem has {node_available / 2**30:.1f} GiB free after batch {batch}: "
            f"{headroom_batches} more would leave less than the "
            f"{node_reserve / 2**30:.1f} GiB kept clear of the kubelet's eviction "
            "threshold; the load stopped here"
        )
    return None
