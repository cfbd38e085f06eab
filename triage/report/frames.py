"""A run's samples as one pandas frame, and the memory figure the headline is taken from.

pandas does what the report used to spell by hand: samples to a frame, the heap profiles
joined to their batches, per-batch deltas. Every analysis reads this frame, so a figure, the
JSON summary and the budgets cannot disagree about which rows they use.

Which memory the headline uses matters more than anything else here. The OOM killer acts on
memory the kernel cannot reclaim: anonymous memory and shmem (and, on cgroup v2, unreclaimable
kernel memory). The working set also counts active page cache, and a profiler that writes a
capture file inside the container fills exactly that: fitted on the working set, a flat lean
operator once read as 2.67 KiB per session and a recommended limit 16x too big. So the
headline is fitted on `unreclaimable_bytes` when the run measured it, on the kubelet's RSS
(anonymous) when it did not, and on the working set only as a last resort, said so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from triage.rundir import Run
from triage.rundir.format import SAMPLE_COLUMNS, Sample, flatten, iter_fields

MEMORY_COLUMNS = tuple(name for name, _ in iter_fields(Sample) if name.endswith("_bytes"))


@dataclass(frozen=True, slots=True)
class Measure:
    """The memory the headline figures are fitted on, and how to say it."""

    column: str
    label: str
    #: How it is computed, for the reader (e.g. "total_rss + total_shmem (cgroup v1)").
    formula: str
    #: False when the headline had to fall back to the working set.
    reclaim_safe: bool


_MEASURES = (
    ("unreclaimable_bytes", "unreclaimable memory", True),
    ("rss_bytes", "anonymous memory (RSS)", True),
    ("working_set_bytes", "working set", False),
)


def samples_frame(run: Run) -> pd.DataFrame:
    """One row per sample, nested records flattened; memory in float bytes (NaN: unknown).

    `heap_bytes` is the run's heap profile (memray's Python heap, pprof's Go inuse_space) at
    that batch, joined on the batch number for the baseline and batch rows it was taken after.
    """
    frame = pd.DataFrame([flatten(s) for s in run.samples], columns=list(SAMPLE_COLUMNS))
    for column in MEMORY_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    heap = pd.DataFrame(
        [(batch, float(p.heap_bytes)) for batch, p in run.heap], columns=["batch", "heap_bytes"]
    ).drop_duplicates("batch", keep="last")
    frame = frame.merge(heap, on="batch", how="left")
    frame.loc[~frame["kind"].isin(["baseline", "batch"]), "heap_bytes"] = np.nan
    frame["in_fit"] = _fit_mask(frame)
    return frame


def _fit_mask(frame: pd.DataFrame) -> pd.Series:
    """Batch rows before the first OOM or restart: the heap was never reset in between."""
    if frame.empty:
        return pd.Series(dtype=bool)
    first = frame.iloc[0]
    disrupted = (
        frame["oom_killed"].astype(bool)
        | (frame["oom_count"] > first["oom_count"])
        | (frame["restart_count"] > first["restart_count"])
        | (frame["kind"] == "cold-start")
    )
    before = ~disrupted.cummax()
    mask: pd.Series = (frame["kind"] == "batch") & before
    return mask


def choose_measure(frame: pd.DataFrame, formula: str = "") -> Measure | None:
    """The first of unreclaimable, RSS, working set that the fitted batches all have."""
    fitted = frame[frame["in_fit"]]
    for column, label, safe in _MEASURES:
        if not fitted.empty and fitted[column].notna().all():
            how = formula if column == "unreclaimable_bytes" else _DEFAULT_FORMULA[column]
            return Measure(column=column, label=label, formula=how, reclaim_safe=safe)
    return None


_DEFAULT_FORMULA = {
    "unreclaimable_bytes": "anon + shmem",
    "rss_bytes": "the kubelet's rssBytes (anonymous memory; shmem unknown)",
    "working_set_bytes": "usage minus inactive page cache (includes active page cache)",
}


def per_batch_deltas(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Batch rows with the growth of `column` and of sessions since the previous reading."""
    rows = frame[frame["kind"].isin(["baseline", "batch"])][["batch", "sessions", column]]
    out = rows.assign(d_sessions=rows["sessions"].diff(), d_memory=rows[column].diff()).dropna(
        subset=["d_sessions"]
    )
    return out.assign(
        bytes_per_session=out["d_memory"] / out["d_sessions"].where(out["d_sessions"] > 0)
    )


def sessions_at(frame: pd.DataFrame, batch: int) -> float | None:
    """Cumulative sessions at the batch sample (0 for the baseline)."""
    rows = frame[(frame["batch"] == batch) & frame["kind"].isin(["baseline", "batch"])]
    return None if rows.empty else float(rows["sessions"].iloc[-1])
