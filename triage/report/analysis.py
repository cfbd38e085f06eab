"""Turn a loaded run directory into the numbers a reviewer acts on.

Everything here is pure (data in, frozen dataclasses out) so the same numbers feed the HTML
report, the Markdown PR comment, the JSON summary, `triage compare` and the CI budgets, and
so each one can be unit-tested without rendering anything.

The central estimate is bytes per session: an ordinary least squares fit of memory against
sessions created, over the batches before the first restart. A restart resets the heap, so
rows after it would bend the line; the rows at and after an OOM are described separately
(restart peak, cumulative OOMs) because that is where a crash loop shows itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from triage.report.rundir import AllocationSite, LatencyRow, MemrayBatch, RunDir, Sample
from triage.report.units import MI, ceil_mi

#: Sessions in the upstream production cluster whose operator kept OOMing; the default target
#: for a limit recommendation when the run itself never reached an OOM.
UPSTREAM_SESSIONS = 4319
#: Extra room on top of the fitted requirement: GC timing and relists make real peaks noisier
#: than a straight line.
DEFAULT_HEADROOM = 0.20
CONFIDENCE = 0.95
PERCENTILES = (50, 90, 99)

#: Stages of a session's startup, in order: (label, from-column, to-column).
LATENCY_STAGES: tuple[tuple[str, str, str], ...] = (
    ("created → pod created", "created", "pod_created"),
    ("pod created → scheduled", "pod_created", "scheduled"),
    ("scheduled → running", "scheduled", "running"),
    ("running → ready", "running", "ready"),
)
LATENCY_TOTAL = ("created → running", "created", "running")


@dataclass(frozen=True, slots=True)
class Fit:
    """memory = intercept + slope * sessions, by ordinary least squares."""

    intercept: float
    slope: float
    #: 95% confidence interval of the slope from the t distribution; None with fewer than
    #: three points, where the interval is undefined rather than merely wide.
    slope_ci: tuple[float, float] | None
    r2: float | None
    n: int
    x_mean: float
    sxx: float
    residual_std: float | None
    t_crit: float | None

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.intercept + self.slope * x

    def band(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """95% confidence band of the mean response, the honest shape of "the line is here"."""
        y = self.predict(x)
        if self.residual_std is None or self.t_crit is None or self.sxx <= 0:
            return y, y
        half = (
            self.t_crit
            * self.residual_std
            * np.sqrt(1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        )
        return y - half, y + half

    @property
    def slope_half_width(self) -> float | None:
        if self.slope_ci is None:
            return None
        return (self.slope_ci[1] - self.slope_ci[0]) / 2


@dataclass(frozen=True, slots=True)
class Recommendation:
    target_sessions: int
    #: Why this target: "option", "2x OOM point" or "upstream production".
    target_source: str
    headroom: float
    #: Slope used: the upper end of the CI when there is one, so the limit is conservative.
    slope_used: float
    required_bytes: float
    limit_bytes: int
    quantity: str


@dataclass(frozen=True, slots=True)
class BatchRow:
    kind: str
    batch: int
    t_seconds: float
    sessions: int
    working_set_bytes: int | None
    rss_bytes: int | None
    batch_seconds: float | None
    create_rate: float | None
    restart_count: int
    oom_count: int
    oom_killed: bool
    in_fit: bool


@dataclass(frozen=True, slots=True)
class StagePercentiles:
    stage: str
    n: int
    #: percentile -> seconds (nearest-rank); empty when no session reached the stage.
    values: Mapping[int, float]
    mean: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    sessions: int
    reached_running: int
    total: StagePercentiles
    stages: tuple[StagePercentiles, ...]
    #: created -> running durations in seconds, for the distribution figure.
    durations: tuple[float, ...]
    #: Why the runners that never reached Running were held, most frequent first.
    not_started_reasons: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SiteDelta:
    function: str
    file: str
    line: int
    first_bytes: int
    last_bytes: int
    first_count: int
    last_count: int

    @property
    def delta_bytes(self) -> int:
        return self.last_bytes - self.first_bytes

    @property
    def delta_count(self) -> int:
        return self.last_count - self.first_count


@dataclass(frozen=True, slots=True)
class MemraySummary:
    batches: tuple[MemrayBatch, ...]
    first_batch: int
    last_batch: int
    #: Sites of the last batch, largest first.
    top: tuple[AllocationSite, ...]
    growth: tuple[SiteDelta, ...]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Every headline number of one run; `to_json()` is summary.json."""

    run: RunDir
    memory_column: str
    rows: tuple[BatchRow, ...]
    fit: Fit | None
    oom: bool
    oom_batch: int | None
    oom_sessions: int | None
    predicted_oom_sessions: float | None
    #: Sessions at the predicted OOM using the CI ends of the slope (steeper -> sooner).
    predicted_oom_range: tuple[float, float | None] | None
    recommendation: Recommendation | None
    peak_working_set_bytes: int | None
    peak_rss_bytes: int | None
    steady_rss_bytes: int | None
    steady_working_set_bytes: int | None
    restart_peak_bytes: int | None
    restart_peak_t: float | None
    #: OOM kills after the first one. The load stops at the first OOM, so a later kill is the
    #: restarted process dying on the objects that already exist: a crash loop, measured or not.
    ooms_after_restart: int
    restarts: int
    cumulative_ooms: int
    sessions_created: int
    batch_seconds_total: float
    throughput_sessions_per_s: float | None
    batch_seconds_median: float | None
    batch_seconds_max: float | None
    latency: LatencySummary | None
    memray: MemraySummary | None

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
    def oom_point(self) -> float | None:
        """Observed OOM sessions when the run OOMed, else the predicted point."""
        if self.oom_sessions is not None:
            return float(self.oom_sessions)
        return self.predicted_oom_sessions

    @property
    def crash_loop_likely(self) -> bool:
        """The restarted pod relists into an OOM: killed again, or peaking at the limit.

        A restarted process that is killed within seconds may never be measured by the
        kubelet (its stats lag a container start), so a second kill counts on its own.
        """
        if self.ooms_after_restart > 0:
            return True
        limit = self.limit_bytes
        return (
            self.restart_peak_bytes is not None
            and limit is not None
            and self.restart_peak_bytes >= limit * 0.98
        )

    def to_json(self) -> dict[str, Any]:
        meta = self.run.meta
        fit = self.fit
        return {
            "schema": 1,
            "run_id": meta.run_id,
            "scenario": meta.scenario,
            "run_dir": str(self.run.path),
            "started_at": meta.started_at,
            "finished_at": meta.finished_at,
            "outcome": {
                "status": meta.outcome.status,
                "message": meta.outcome.message,
                "oom": self.oom,
                "oom_batch": self.oom_batch,
                "oom_sessions": self.oom_sessions,
            },
            "limit_bytes": meta.limit_bytes,
            "mem_limit": meta.options.get("mem_limit"),
            "fit": None
            if fit is None
            else {
                "memory_column": self.memory_column,
                "intercept_bytes": fit.intercept,
                "bytes_per_session": fit.slope,
                "bytes_per_session_ci95": list(fit.slope_ci) if fit.slope_ci else None,
                "r2": fit.r2,
                "points": fit.n,
            },
            "predicted_oom_sessions": self.predicted_oom_sessions,
            "predicted_oom_sessions_range": list(self.predicted_oom_range)
            if self.predicted_oom_range
            else None,
            "recommendation": None
            if self.recommendation is None
            else {
                "target_sessions": self.recommendation.target_sessions,
                "target_source": self.recommendation.target_source,
                "headroom": self.recommendation.headroom,
                "bytes_per_session_used": self.recommendation.slope_used,
                "limit_bytes": self.recommendation.limit_bytes,
                "limit": self.recommendation.quantity,
            },
            "memory": {
                "peak_working_set_bytes": self.peak_working_set_bytes,
                "peak_rss_bytes": self.peak_rss_bytes,
                "steady_working_set_bytes": self.steady_working_set_bytes,
                "steady_rss_bytes": self.steady_rss_bytes,
                "restart_peak_bytes": self.restart_peak_bytes,
                "crash_loop_likely": self.crash_loop_likely,
                "ooms_after_restart": self.ooms_after_restart,
            },
            "restarts": {"restarts": self.restarts, "cumulative_ooms": self.cumulative_ooms},
            "throughput": {
                "sessions_created": self.sessions_created,
                "batch_seconds_total": self.batch_seconds_total,
                "sessions_per_second": self.throughput_sessions_per_s,
                "batch_seconds_median": self.batch_seconds_median,
                "batch_seconds_max": self.batch_seconds_max,
            },
            "latency": None
            if self.latency is None
            else {
                "sessions": self.latency.sessions,
                "reached_running": self.latency.reached_running,
                "created_to_running_seconds": _percentiles_json(self.latency.total),
                "stages": {s.stage: _percentiles_json(s) for s in self.latency.stages},
                "not_started": dict(self.latency.not_started_reasons),
            },
            "memray": None
            if self.memray is None
            else {
                "batches": [
                    {"batch": b.batch, "heap_bytes": b.heap_bytes, "allocations": b.allocations}
                    for b in self.memray.batches
                ],
                "growth": [
                    {
                        "function": d.function,
                        "file": d.file,
                        "line": d.line,
                        "delta_bytes": d.delta_bytes,
                        "delta_count": d.delta_count,
                    }
                    for d in self.memray.growth
                ],
            },
            "batches": [
                {
                    "kind": r.kind,
                    "batch": r.batch,
                    "t_seconds": r.t_seconds,
                    "sessions": r.sessions,
                    "working_set_bytes": r.working_set_bytes,
                    "rss_bytes": r.rss_bytes,
                    "batch_seconds": r.batch_seconds,
                    "create_rate": r.create_rate,
                    "restart_count": r.restart_count,
                    "oom_count": r.oom_count,
                    "oom_killed": r.oom_killed,
                    "in_fit": r.in_fit,
                }
                for r in self.rows
            ],
        }


def _percentiles_json(p: StagePercentiles) -> dict[str, Any]:
    return {
        "n": p.n,
        **{f"p{k}": v for k, v in p.values.items()},
        "mean": p.mean,
        "max": p.max,
    }


def fit_ols(x: Sequence[float], y: Sequence[float]) -> Fit | None:
    """OLS of y on x with a t-based 95% interval on the slope; None when x does not vary."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n = len(xs)
    if n < 2:
        return None
    x_mean, y_mean = float(xs.mean()), float(ys.mean())
    sxx = float(((xs - x_mean) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float(((xs - x_mean) * (ys - y_mean)).sum() / sxx)
    intercept = y_mean - slope * x_mean
    resid = ys - (intercept + slope * xs)
    ss_res = float((resid**2).sum())
    ss_tot = float(((ys - y_mean) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    if n < 3:
        return Fit(intercept, slope, None, r2, n, x_mean, sxx, None, None)
    residual_std = math.sqrt(ss_res / (n - 2))
    t_crit = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 2))
    half = t_crit * residual_std / math.sqrt(sxx)
    return Fit(
        intercept, slope, (slope - half, slope + half), r2, n, x_mean, sxx, residual_std, t_crit
    )


def nearest_rank(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always an observed value, no interpolation to argue about."""
    if not values:
        raise ValueError("nearest_rank of an empty sequence")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _stage(label: str, durations: Sequence[float]) -> StagePercentiles:
    if not durations:
        return StagePercentiles(label, 0, {}, None, None)
    return StagePercentiles(
        stage=label,
        n=len(durations),
        values={p: nearest_rank(durations, p) for p in PERCENTILES},
        mean=float(sum(durations) / len(durations)),
        max=float(max(durations)),
    )


def _durations(rows: Sequence[LatencyRow], start: str, end: str) -> list[float]:
    out: list[float] = []
    for r in rows:
        a, b = getattr(r, start), getattr(r, end)
        if a is not None and b is not None:
            out.append(max(0.0, float(b) - float(a)))
    return out


def summarize_latency(rows: Sequence[LatencyRow]) -> LatencySummary:
    label, start, end = LATENCY_TOTAL
    total = _durations(rows, start, end)
    return LatencySummary(
        sessions=len(rows),
        reached_running=sum(1 for r in rows if r.running is not None),
        total=_stage(label, total),
        stages=tuple(_stage(lbl, _durations(rows, a, b)) for lbl, a, b in LATENCY_STAGES),
        durations=tuple(total),
        not_started_reasons=tuple(
            Counter(
                r.waiting or "no runner pod seen" for r in rows if r.running is None
            ).most_common()
        ),
    )


def summarize_memray(batches: Sequence[MemrayBatch], *, top_n: int = 10) -> MemraySummary | None:
    """Top sites of the last batch, and per-site growth between the first and last batch.

    Growth is a diff by (function, file, line): a site absent from one side counts as zero
    there, because a site that only appears late is exactly the leak one is looking for.
    """
    if not batches:
        return None
    first, last = batches[0], batches[-1]
    top = tuple(sorted(last.top, key=lambda s: s.bytes, reverse=True)[:top_n])
    growth: list[SiteDelta] = []
    if len(batches) > 1:
        before = {s.key: s for s in first.top}
        after = {s.key: s for s in last.top}
        for key in before.keys() | after.keys():
            b, a = before.get(key), after.get(key)
            growth.append(
                SiteDelta(
                    function=key[0],
                    file=key[1],
                    line=key[2],
                    first_bytes=b.bytes if b else 0,
                    last_bytes=a.bytes if a else 0,
                    first_count=b.count if b else 0,
                    last_count=a.count if a else 0,
                )
            )
        growth = [d for d in growth if d.delta_bytes > 0]
        growth.sort(key=lambda d: (-d.delta_bytes, d.function, d.file, d.line))
    return MemraySummary(
        batches=tuple(batches),
        first_batch=first.batch,
        last_batch=last.batch,
        top=top,
        growth=tuple(growth[:top_n]),
    )


def _first_disruption(samples: Sequence[Sample]) -> int | None:
    """Index of the first sample showing an OOM or a restart, the point the heap was reset."""
    if not samples:
        return None
    restart0, oom0 = samples[0].restart_count, samples[0].oom_count
    for i, s in enumerate(samples):
        if s.oom_killed or s.oom_count > oom0 or s.restart_count > restart0:
            return i
    return None


def _memory(s: Sample, column: str) -> int | None:
    value: int | None = getattr(s, column)
    return value


def default_target(*, oom_sessions: int | None) -> tuple[int, str]:
    if oom_sessions:
        return 2 * oom_sessions, "2x OOM point"
    return UPSTREAM_SESSIONS, "upstream production"


def recommend_limit(
    *, fit: Fit, target_sessions: int, target_source: str, headroom: float = DEFAULT_HEADROOM
) -> Recommendation:
    """Limit for `target_sessions`: intercept + slope x target, plus headroom, in whole Mi."""
    slope = fit.slope_ci[1] if fit.slope_ci else fit.slope
    slope = max(slope, 0.0)
    required = max(fit.intercept + slope * target_sessions, 0.0)
    quantity = ceil_mi(required * (1 + headroom))
    return Recommendation(
        target_sessions=target_sessions,
        target_source=target_source,
        headroom=headroom,
        slope_used=slope,
        required_bytes=required,
        limit_bytes=int(quantity[:-2]) * MI,
        quantity=quantity,
    )


def summarize(
    run: RunDir, *, target_sessions: int | None = None, headroom: float = DEFAULT_HEADROOM
) -> RunSummary:
    """All headline numbers of one run."""
    samples = run.samples
    outcome = run.meta.outcome
    memory_column = (
        "working_set_bytes"
        if any(s.working_set_bytes is not None for s in samples)
        else "rss_bytes"
    )

    cut = _first_disruption(samples)
    oom_idx = next(
        (i for i, s in enumerate(samples) if s.oom_killed or s.oom_count > samples[0].oom_count),
        None,
    )
    oom = outcome.status == "oom" or oom_idx is not None
    oom_batch = outcome.oom_batch
    if oom_batch is None and oom_idx is not None:
        oom_batch = samples[oom_idx].batch
    oom_sessions = outcome.oom_sessions
    if oom_sessions is None and oom_idx is not None:
        oom_sessions = samples[oom_idx].sessions

    def in_fit(i: int, s: Sample) -> bool:
        if s.kind != "batch" or _memory(s, memory_column) is None:
            return False
        if cut is not None and i >= cut:
            return False
        return not (oom_batch is not None and s.batch >= oom_batch)

    flags = [in_fit(i, s) for i, s in enumerate(samples)]
    fit_x = [float(s.sessions) for s, f in zip(samples, flags, strict=True) if f]
    fit_y = [
        float(_memory(s, memory_column) or 0) for s, f in zip(samples, flags, strict=True) if f
    ]
    fit = fit_ols(fit_x, fit_y)

    limit = run.meta.limit_bytes
    predicted: float | None = None
    predicted_range: tuple[float, float | None] | None = None
    if fit is not None and limit is not None and fit.slope > 0:
        predicted = max(0.0, (limit - fit.intercept) / fit.slope)
        if fit.slope_ci is not None:
            lo, hi = fit.slope_ci
            soonest = max(0.0, (limit - fit.intercept) / hi) if hi > 0 else predicted
            latest = max(0.0, (limit - fit.intercept) / lo) if lo > 0 else None
            predicted_range = (soonest, latest)

    recommendation: Recommendation | None = None
    if fit is not None:
        if target_sessions is not None:
            target, source = target_sessions, "option"
        else:
            target, source = default_target(oom_sessions=oom_sessions if oom else None)
        recommendation = recommend_limit(
            fit=fit, target_sessions=target, target_source=source, headroom=headroom
        )

    ws = [s.working_set_bytes for s in samples if s.working_set_bytes is not None]
    rss = [s.rss_bytes for s in samples if s.rss_bytes is not None]
    pre = [s for s, f in zip(samples, flags, strict=True) if f]
    steady_rss = next((s.rss_bytes for s in reversed(pre) if s.rss_bytes is not None), None)
    steady_ws = next(
        (s.working_set_bytes for s in reversed(pre) if s.working_set_bytes is not None), None
    )
    if not pre:
        # Without a clean pre-disruption batch, the last batch reading is the best steady state.
        batches = [s for s in samples if s.kind == "batch"]
        steady_rss = next((s.rss_bytes for s in reversed(batches) if s.rss_bytes), None)
        steady_ws = next(
            (s.working_set_bytes for s in reversed(batches) if s.working_set_bytes), None
        )

    restart_peak: int | None = None
    restart_peak_t: float | None = None
    ooms_after_restart = 0
    if oom_idx is not None:
        ooms_after_restart = max(s.oom_count for s in samples) - samples[oom_idx].oom_count
        # The OOM sample itself can still carry the pre-kill reading; the peak of interest is
        # the restarted process relisting everything, so look strictly after it.
        after = [s for s in samples[oom_idx + 1 :] if _memory(s, memory_column) is not None]
        if after:
            peak = max(after, key=lambda s: _memory(s, memory_column) or 0)
            restart_peak, restart_peak_t = _memory(peak, memory_column), peak.t_seconds

    batch_rows = [s for s in samples if s.kind == "batch"]
    batch_secs = [s.batch_seconds for s in batch_rows if s.batch_seconds is not None]
    first_sessions = samples[0].sessions if samples else 0
    created = max((s.sessions for s in samples), default=0) - (
        first_sessions if samples and samples[0].kind == "baseline" else 0
    )
    total_secs = float(sum(batch_secs))
    rows = tuple(
        BatchRow(
            kind=s.kind,
            batch=s.batch,
            t_seconds=s.t_seconds,
            sessions=s.sessions,
            working_set_bytes=s.working_set_bytes,
            rss_bytes=s.rss_bytes,
            batch_seconds=s.batch_seconds,
            create_rate=s.create_rate,
            restart_count=s.restart_count,
            oom_count=s.oom_count,
            oom_killed=s.oom_killed,
            in_fit=f,
        )
        for s, f in zip(samples, flags, strict=True)
    )
    return RunSummary(
        run=run,
        memory_column=memory_column,
        rows=rows,
        fit=fit,
        oom=oom,
        oom_batch=oom_batch if oom else None,
        oom_sessions=oom_sessions if oom else None,
        predicted_oom_sessions=predicted,
        predicted_oom_range=predicted_range,
        recommendation=recommendation,
        peak_working_set_bytes=max(ws) if ws else None,
        peak_rss_bytes=max(rss) if rss else None,
        steady_rss_bytes=steady_rss,
        steady_working_set_bytes=steady_ws,
        restart_peak_bytes=restart_peak,
        restart_peak_t=restart_peak_t,
        ooms_after_restart=ooms_after_restart,
        restarts=(max(s.restart_count for s in samples) - samples[0].restart_count)
        if samples
        else 0,
        cumulative_ooms=max((s.oom_count for s in samples), default=0),
        sessions_created=created,
        batch_seconds_total=total_secs,
        throughput_sessions_per_s=(created / total_secs) if total_secs > 0 else None,
        batch_seconds_median=float(np.median(batch_secs)) if batch_secs else None,
        batch_seconds_max=max(batch_secs) if batch_secs else None,
        latency=summarize_latency(run.latency) if run.latency else None,
        memray=summarize_memray(run.memray),
    )
