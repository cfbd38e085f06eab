"""Turn a loaded run directory into the numbers a reviewer acts on.

Everything here is data in, frozen dataclasses out, so the same numbers feed the HTML
report, the Markdown PR comment, summary.json, `triage compare` and the CI budgets.

The headline (bytes per session, the OOM point, the recommended limit) is fitted on the
memory the kernel cannot reclaim (see `frames.choose_measure`); the working set is fitted
beside it and the gap between the two is explained, because a working set inflated by page
cache is the most common way an operator's memory figure lies. A profiler's own fixed cost
(memray's tracker, measured at idle before the load) is taken out of the OOM point and the
recommended limit, and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from triage.report.coldstart import ColdStart, summarize_cold_start
from triage.report.fit import (
    DEFAULT_HEADROOM,
    NOISE_FLOOR,
    Fit,
    ObjectByteFit,
    Recommendation,
    default_target,
    fit_object_and_bytes,
    fit_ols,
    recommend_limit,
)
from triage.report.frames import Measure, choose_measure, samples_frame, sessions_at
from triage.report.latency import LatencySummary, summarize_latency
from triage.report.sites import HeapSummary, summarize_heap, why_line
from triage.rundir import Run
from triage.rundir.format import Event, record_json

SUMMARY_SCHEMA = 2


@dataclass(frozen=True, slots=True)
class Gap:
    """Working set against the headline memory at the last fitted batch, and why they differ."""

    working_set_bytes: float
    measure_bytes: float
    #: Page cache charged to the container then, when known.
    cache_bytes: float | None
    #: Working set slope minus headline slope: growth that is reclaimable.
    slope_gap: float | None

    @property
    def bytes(self) -> float:
        return self.working_set_bytes - self.measure_bytes


def own_intercept(fit: Fit, profiler_fixed_cost: float | None) -> float:
    """The fitted memory at zero sessions less what the profiler itself holds.

    Every point the limit is projected to (predicted OOM, its range, a flat run's bound,
    the recommended limit) starts from here, so a profiled run and an unprofiled one of
    the same load land on the same figures.
    """
    return fit.intercept - (profiler_fixed_cost or 0.0)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Every headline number of one run; `to_json()` is summary.json."""

    run: Run
    frame: pd.DataFrame
    measure: Measure | None
    fit: Fit | None
    #: The same fit on the working set, for the gap.
    ws_fit: Fit | None
    object_fit: ObjectByteFit | None
    gap: Gap | None
    oom: bool
    oom_batch: int | None
    oom_sessions: int | None
    #: The observed OOM point moved by the profiler's fixed cost / slope (None: no correction).
    oom_sessions_corrected: float | None
    #: Where the fitted line meets the limit, with the profiler's fixed cost taken out.
    predicted_oom_sessions: float | None
    #: The same with the 95% ends of the slope (steeper -> sooner).
    predicted_oom_range: tuple[float, float | None] | None
    profiler_fixed_cost: float | None
    recommendation: Recommendation | None
    peak_working_set_bytes: float | None
    peak_measure_bytes: float | None
    steady_measure_bytes: float | None
    steady_working_set_bytes: float | None
    restart_peak_bytes: float | None
    restart_peak_t: float | None
    #: OOM kills after the first one: the restarted process dying on what already exists.
    ooms_after_restart: int
    #: Container restarts over the run, less those triage made itself (own_restarts).
    restarts: int
    #: Cold starts that restarted the container in place: triage's doing, not the operator's.
    own_restarts: int
    cumulative_ooms: int
    sessions_created: int
    batch_seconds_total: float
    throughput_sessions_per_s: float | None
    batch_seconds_median: float | None
    batch_seconds_max: float | None
    latency: LatencySummary | None
    heap: HeapSummary | None
    why: str | None
    cold_start: ColdStart | None

    @property
    def run_id(self) -> str:
        return self.run.meta.run_id

    @property
    def scenario(self) -> str:
        return self.run.meta.scenario

    @property
    def limit_bytes(self) -> int | None:
        return self.run.meta.limit_bytes

    @property
    def memory_column(self) -> str:
        return self.measure.column if self.measure else "working_set_bytes"

    @property
    def oom_point(self) -> float | None:
        """Observed OOM sessions (corrected for the profiler) when the run OOMed, else predicted."""
        if self.oom_sessions is not None:
            return self.oom_sessions_corrected or float(self.oom_sessions)
        return self.predicted_oom_sessions

    @property
    def flat(self) -> bool:
        """No OOM and a fitted slope under the noise floor: memory does not grow per session."""
        return not self.oom and self.fit is not None and self.fit.slope < NOISE_FLOOR

    @property
    def sessions_at_floor(self) -> float | None:
        """Sessions the limit would hold if memory grew at the noise floor: a flat run's bound.

        A flat run's own OOM point is an extrapolation of noise (a slope of 20 B says 5
        million sessions, one of 2 B fifty million); what the run shows is only that it is
        at least this far away.
        """
        if not self.flat or self.limit_bytes is None or self.fit is None:
            return None
        intercept = own_intercept(self.fit, self.profiler_fixed_cost)
        at_floor = (self.limit_bytes - intercept) / NOISE_FLOOR
        if at_floor <= 0:
            return 0.0
        # Two significant digits, rounded down: a bound, not a prediction.
        step = 10.0 ** (math.floor(math.log10(at_floor)) - 1)
        return math.floor(at_floor / step) * step

    @property
    def crash_loop_likely(self) -> bool:
        """The restarted pod relists into an OOM: killed again, or peaking at the limit."""
        if self.ooms_after_restart > 0 or (self.cold_start and self.cold_start.killed):
            return True
        limit = self.limit_bytes
        return (
            self.restart_peak_bytes is not None
            and limit is not None
            and self.restart_peak_bytes >= limit * 0.98
        )

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def summarize(
    run: Run, *, target_sessions: int | None = None, headroom: float = DEFAULT_HEADROOM
) -> RunSummary:
    """All headline numbers of one run."""
    frame = samples_frame(run)
    meta = run.meta
    measure = choose_measure(frame, meta.memory_formula)
    column = measure.column if measure else "working_set_bytes"
    fitted = frame[frame["in_fit"]]
    fit = fit_ols(fitted["sessions"].tolist(), fitted[column].tolist()) if measure else None
    ws_rows = fitted.dropna(subset=["working_set_bytes"])
    ws_fit = fit_ols(ws_rows["sessions"].tolist(), ws_rows["working_set_bytes"].tolist())
    object_fit = None
    if measure and fitted["payload_bytes"].notna().all():
        object_fit = fit_object_and_bytes(
            fitted["sessions"].tolist(), fitted["payload_bytes"].tolist(), fitted[column].tolist()
        )

    first = frame.iloc[0] if not frame.empty else None
    oom_rows = (
        frame[frame["oom_killed"].astype(bool) | (frame["oom_count"] > first["oom_count"])]
        if first is not None
        else frame
    )
    outcome = meta.outcome
    oom = outcome.status == "oom" or not oom_rows.empty
    oom_batch = outcome.oom_batch
    oom_sessions = outcome.oom_sessions
    if not oom_rows.empty:
        oom_batch = oom_batch if oom_batch is not None else int(oom_rows["batch"].iloc[0])
        oom_sessions = (
            oom_sessions if oom_sessions is not None else int(oom_rows["sessions"].iloc[0])
        )

    fixed = float(meta.profiler.fixed_cost_bytes) if meta.profiler.fixed_cost_bytes else None
    limit = meta.limit_bytes
    predicted: float | None = None
    predicted_range: tuple[float, float | None] | None = None
    corrected: float | None = None
    intercept = None
    if fit is not None:
        intercept = own_intercept(fit, fixed)
        if limit is not None and fit.slope > 0:
            predicted = max(0.0, (limit - intercept) / fit.slope)
            if fit.slope_ci is not None:
                lo, hi = fit.slope_ci
                soonest = max(0.0, (limit - intercept) / hi) if hi > 0 else predicted
                latest = max(0.0, (limit - intercept) / lo) if lo > 0 else None
                predicted_range = (soonest, latest)
        if oom and oom_sessions is not None and fixed and fit.slope > 0:
            corrected = oom_sessions + fixed / fit.slope

    recommendation = None
    if fit is not None:
        if target_sessions is not None:
            target, source = target_sessions, "option"
        else:
            target, source = default_target(
                oom_sessions=(corrected or oom_sessions) if oom else None
            )
        recommendation = recommend_limit(
            fit=fit, target_sessions=target, target_source=source, headroom=headroom,
            intercept=intercept,
        )  # fmt: skip

    gap = None
    if measure and measure.column != "working_set_bytes" and not fitted.empty:
        last = fitted.iloc[-1]
        if not math.isnan(last["working_set_bytes"]):
            gap = Gap(
                working_set_bytes=float(last["working_set_bytes"]),
                measure_bytes=float(last[column]),
                cache_bytes=_opt(last["cache_bytes"]),
                slope_gap=(ws_fit.slope - fit.slope) if ws_fit and fit else None,
            )

    own_restarts = _own_restarts(frame, run.events)
    restart_peak = restart_peak_t = None
    ooms_after = 0
    if not oom_rows.empty:
        at = oom_rows.index[0]
        ooms_after = int(frame["oom_count"].max() - oom_rows["oom_count"].iloc[0])
        # The OOM sample can carry the pre-kill reading; the peak of interest is the
        # restarted process relisting everything, strictly after it.
        after = frame.loc[frame.index > at].dropna(subset=[column])
        if not after.empty:
            peak = after.loc[after[column].idxmax()]
            restart_peak, restart_peak_t = float(peak[column]), float(peak["t_seconds"])

    batches = frame[frame["kind"] == "batch"]
    secs = batches["batch_seconds"].dropna()
    steady_rows = fitted if not fitted.empty else batches
    created = int(frame["sessions"].max() - frame["sessions"].iloc[0]) if len(frame) else 0
    total_secs = float(secs.sum())
    sessions_map = {
        int(b): float(s)
        for b, s in frame[frame["kind"].isin(["baseline", "batch"])][["batch", "sessions"]]
        .drop_duplicates("batch", keep="first")
        .itertuples(index=False)
    }
    slope = fit.slope if fit else None
    heap = summarize_heap(run.heap, sessions_at=sessions_map, slope=slope)
    return RunSummary(
        run=run,
        frame=frame,
        measure=measure,
        fit=fit,
        ws_fit=ws_fit,
        object_fit=object_fit,
        gap=gap,
        oom=oom,
        oom_batch=oom_batch if oom else None,
        oom_sessions=oom_sessions if oom else None,
        oom_sessions_corrected=corrected,
        predicted_oom_sessions=predicted,
        predicted_oom_range=predicted_range,
        profiler_fixed_cost=fixed,
        recommendation=recommendation,
        peak_working_set_bytes=_opt(frame["working_set_bytes"].max()),
        peak_measure_bytes=_opt(frame[column].max()) if measure else None,
        steady_measure_bytes=_last(steady_rows, column) if measure else None,
        steady_working_set_bytes=_last(steady_rows, "working_set_bytes"),
        restart_peak_bytes=restart_peak,
        restart_peak_t=restart_peak_t,
        ooms_after_restart=ooms_after,
        restarts=_restarts(frame, own_restarts),
        own_restarts=own_restarts,
        cumulative_ooms=int(frame["oom_count"].max()) if len(frame) else 0,
        sessions_created=max(created, 0),
        batch_seconds_total=total_secs,
        throughput_sessions_per_s=created / total_secs if total_secs > 0 else None,
        batch_seconds_median=float(np.median(secs)) if len(secs) else None,
        batch_seconds_max=float(secs.max()) if len(secs) else None,
        latency=summarize_latency(run.latency) if run.latency else None,
        heap=heap,
        why=why_line(heap, slope),
        cold_start=summarize_cold_start(frame, run.events, column),
    )


def _own_restarts(frame: pd.DataFrame, events: Sequence[Event]) -> int:
    """Restarts that triage made within the samples (a cold start in place), as the sampler
    marked them; one before the first sample is already in that sample's count."""
    first = int(frame["restart_count"].iloc[0]) if len(frame) else 0
    return sum(
        1
        for e in events
        if e.kind == "container-restarted"
        and e.data.get("expected")
        and int(e.data.get("restart_count") or 0) > first
    )


def _restarts(frame: pd.DataFrame, own: int) -> int:
    """The container's restarts over the run that were not triage's own doing (`own`)."""
    if frame.empty:
        return 0
    counted = int(frame["restart_count"].max() - frame["restart_count"].iloc[0])
    return max(0, counted - own)


def _last(rows: pd.DataFrame, column: str) -> float | None:
    values = rows[column].dropna()
    return float(values.iloc[-1]) if not values.empty else None


def session_count_at(s: RunSummary, batch: int) -> float | None:
    return sessions_at(s.frame, batch)


def _fit_json(fit: Fit | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {
        "intercept_bytes": fit.intercept,
        "bytes_per_session": fit.slope,
        "bytes_per_session_ci95": list(fit.slope_ci) if fit.slope_ci else None,
        "r2": fit.r2,
        "points": fit.n,
    }


def _to_json(s: RunSummary) -> dict[str, Any]:
    meta = s.run.meta
    batches = s.frame.replace({np.nan: None})
    return {
        "schema": SUMMARY_SCHEMA,
        "run_id": meta.run_id,
        "scenario": meta.scenario,
        "run_dir": str(s.run.path),
        "started_at": meta.started_at,
        "finished_at": meta.finished_at,
        "outcome": {
            "status": meta.outcome.status,
            "message": meta.outcome.message,
            "oom": s.oom,
            "oom_batch": s.oom_batch,
            "oom_sessions": s.oom_sessions,
            "oom_sessions_without_profiler": s.oom_sessions_corrected,
        },
        "limit_bytes": meta.limit_bytes,
        "mem_limit": meta.options.get("mem_limit"),
        "measure": None if s.measure is None else record_json(s.measure),
        "fit": None
        if s.fit is None
        else {"memory_column": s.memory_column, **(_fit_json(s.fit) or {})},
        "working_set_fit": _fit_json(s.ws_fit),
        "per_object_and_byte": None if s.object_fit is None else record_json(s.object_fit),
        "gap": None if s.gap is None else {**record_json(s.gap), "bytes": s.gap.bytes},
        "profiler": {**record_json(meta.profiler), "fixed_cost_accounted": s.profiler_fixed_cost},
        "predicted_oom_sessions": s.predicted_oom_sessions,
        "flat": s.flat,
        "sessions_at_noise_floor": s.sessions_at_floor,
        "predicted_oom_sessions_range": list(s.predicted_oom_range)
        if s.predicted_oom_range
        else None,
        "recommendation": None if s.recommendation is None else record_json(s.recommendation),
        "memory": {
            "peak_working_set_bytes": s.peak_working_set_bytes,
            "peak_bytes": s.peak_measure_bytes,
            "steady_bytes": s.steady_measure_bytes,
            "steady_working_set_bytes": s.steady_working_set_bytes,
            "restart_peak_bytes": s.restart_peak_bytes,
            "crash_loop_likely": s.crash_loop_likely,
            "ooms_after_restart": s.ooms_after_restart,
        },
        "cold_start": None
        if s.cold_start is None
        else {**record_json(s.cold_start), "peak_ratio": s.cold_start.peak_ratio},
        "restarts": {
            "restarts": s.restarts,
            "cumulative_ooms": s.cumulative_ooms,
            "by_triage": s.own_restarts,
        },
        "throughput": {
            "sessions_created": s.sessions_created,
            "batch_seconds_total": s.batch_seconds_total,
            "sessions_per_second": s.throughput_sessions_per_s,
            "batch_seconds_median": s.batch_seconds_median,
            "batch_seconds_max": s.batch_seconds_max,
        },
        "latency": None
        if s.latency is None
        else {
            "sessions": s.latency.sessions,
            "reached_running": s.latency.reached_running,
            "created_to_running_seconds": s.latency.total.to_json(),
            "stages": {st.stage: st.to_json() for st in s.latency.stages},
            "not_started": dict(s.latency.not_started_reasons),
        },
        "why": s.why,
        "heap": None
        if s.heap is None
        else {
            "profiler": s.heap.profiler,
            "batches": [{"batch": b, "heap_bytes": h} for b, h in s.heap.batches],
            "growth": [
                {
                    **record_json(g),
                    "delta_bytes": g.delta_bytes,
                    "path": g.path,
                    "levelled": g.levelled,
                }
                for g in s.heap.growth
            ],
        },
        "events": [record_json(e) for e in s.run.events],
        "batches": batches.to_dict(orient="records"),
    }
