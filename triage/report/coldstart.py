"""The cold start: what the operator needs to come back up with everything already there.

Operators with large caches die in practice at start-up, in a crash loop: the initial LIST
of every object lands in memory at once, before anything is trimmed, so the peak during the
first sync can be well above the steady state that the batches measured. The run restarts
the operator (at `--restart-at N`, and after a run that survived) and samples it densely
until it is ready and settled; this module reads those samples back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from triage.rundir import Event


@dataclass(frozen=True, slots=True)
class ColdStart:
    #: Sessions that existed when the operator was restarted.
    sessions: int
    #: The memory before the restart (the last batch reading).
    steady_bytes: float | None
    #: Highest reading while the restarted operator listed and synced.
    peak_bytes: float | None
    #: The reading once ready and settled.
    settled_bytes: float | None
    #: Seconds from the new container's start to Ready (runs before this version: from the
    #: restart); None if it never was.
    ready_seconds: float | None
    samples: int
    #: The restarted operator was OOMKilled while syncing: a crash loop at start-up.
    killed: bool
    #: Seconds from the restart (the delete) to Ready: the above plus the cluster's time to
    #: stop the old pod and start the new one. None in runs before this was recorded.
    restart_seconds: float | None = None
    #: When the new container started, on the samples' clock (`t_seconds`).
    started_t: float | None = None

    @property
    def peak_ratio(self) -> float | None:
        if self.peak_bytes is None or not self.steady_bytes:
            return None
        return self.peak_bytes / self.steady_bytes


def summarize_cold_start(
    frame: pd.DataFrame, events: Sequence[Event], column: str
) -> ColdStart | None:
    rows = frame[frame["kind"] == "cold-start"]
    event = next((e for e in reversed(events) if e.kind == "cold-start"), None)
    if rows.empty and event is None:
        return None
    before = frame[
        (frame["kind"] == "batch")
        & (frame.index < (rows.index.min() if not rows.empty else len(frame)))
    ]
    steady = before[column].dropna()
    readings = rows[column].dropna()
    data = event.data if event is not None else {}

    def number(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) else None

    return ColdStart(
        sessions=int(data.get("sessions", rows["sessions"].max() if not rows.empty else 0)),
        steady_bytes=float(steady.iloc[-1]) if not steady.empty else None,
        peak_bytes=float(readings.max()) if not readings.empty else None,
        settled_bytes=float(readings.iloc[-1]) if not readings.empty else None,
        ready_seconds=number("ready_seconds"),
        samples=len(rows),
        killed=bool(rows["oom_killed"].astype(bool).any()) if not rows.empty else False,
        restart_seconds=number("restart_seconds"),
        started_t=number("started_t_seconds"),
    )
