"""Compare two runs: did the change make memory per session, peak or OOM point worse?

A difference in bytes per session is only called a regression when it is beyond the threshold
*and* the two 95% intervals do not overlap: two runs of the same build differ by a few percent,
and a gate that cries wolf on noise gets switched off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from triage.quantity import human_bytes
from triage.report.fit import NOISE_FLOOR
from triage.report.summary import RunSummary

DEFAULT_THRESHOLD = 0.10

Unit = Literal["bytes", "bytes/session", "sessions", "seconds", "count"]


@dataclass(frozen=True, slots=True)
class MetricChange:
    key: str
    label: str
    unit: Unit
    base: float | None
    new: float | None
    #: "higher" when a larger value is worse (memory), "lower" when smaller is (OOM point).
    worse_when: Literal["higher", "lower"]
    regression: bool
    improvement: bool
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.base is None or self.new is None:
            return None
        return self.new - self.base

    @property
    def relative(self) -> float | None:
        if self.base is None or self.new is None or self.base == 0:
            return None
        return (self.new - self.base) / abs(self.base)


@dataclass(frozen=True, slots=True)
class Comparison:
    base: RunSummary
    new: RunSummary
    threshold: float
    changes: tuple[MetricChange, ...]
    slope_ci_overlap: bool | None
    notes: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> tuple[MetricChange, ...]:
        return tuple(c for c in self.changes if c.regression)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "base": {"run_id": self.base.run_id, "scenario": self.base.scenario},
            "new": {"run_id": self.new.run_id, "scenario": self.new.scenario},
            "threshold": self.threshold,
            "bytes_per_session_ci_overlap": self.slope_ci_overlap,
            "regression": bool(self.regressions),
            "changes": [
                {
                    "metric": c.key,
                    "unit": c.unit,
                    "base": c.base,
                    "new": c.new,
                    "delta": c.delta,
                    "relative": c.relative,
                    "regression": c.regression,
                    "improvement": c.improvement,
                    "note": c.note,
                }
                for c in self.changes
            ],
            "notes": list(self.notes),
        }


def _change(
    *,
    key: str,
    label: str,
    unit: Unit,
    base: float | None,
    new: float | None,
    worse_when: Literal["higher", "lower"],
    threshold: float,
    noise: str = "",
    note: str = "",
) -> MetricChange:
    """One row; `noise` says why a change past the threshold is not one (empty: it is)."""
    worse = better = False
    if base is not None and new is not None and base != 0:
        rel = (new - base) / abs(base)
        signed = rel if worse_when == "higher" else -rel
        worse, better = signed > threshold, signed < -threshold
    elif base is not None and new is not None and new != base:
        # From zero to something (e.g. no OOM to an OOM) there is no ratio, only a direction.
        worse = (new > base) == (worse_when == "higher")
        better = not worse
    if noise and (worse or better):
        note = (note + "; " if note else "") + f"within noise: {noise}"
        worse = better = False
    return MetricChange(key, label, unit, base, new, worse_when, worse, better, note)


#: Summary fields compared as they are, where more is worse: (attribute, label, unit).
_WORSE_WHEN_HIGHER: tuple[tuple[str, str, Unit], ...] = (
    ("peak_working_set_bytes", "Peak working set", "bytes"),
    ("steady_measure_bytes", "Steady memory (unreclaimable)", "bytes"),
    ("restart_peak_bytes", "Peak after restart", "bytes"),
    ("cumulative_ooms", "Cumulative OOMs", "count"),
)


def _opt(value: int | float | None) -> float | None:
    return None if value is None else float(value)


def compare_runs(
    *, base: RunSummary, new: RunSummary, threshold: float = DEFAULT_THRESHOLD
) -> Comparison:
    notes: list[str] = []
    if base.scenario != new.scenario:
        notes.append(f"different scenarios ({base.scenario} vs {new.scenario}): compare with care")
    if base.limit_bytes != new.limit_bytes:
        notes.append("different memory limits: the OOM points are not directly comparable")

    overlap: bool | None = None
    if base.fit and new.fit and base.fit.slope_ci and new.fit.slope_ci:
        (b_lo, b_hi), (n_lo, n_hi) = base.fit.slope_ci, new.fit.slope_ci
        overlap = b_lo <= n_hi and n_lo <= b_hi

    slope_noise = "95% CIs overlap" if overlap else ""
    if base.fit and new.fit and abs(new.fit.slope - base.fit.slope) < NOISE_FLOOR:
        slope_noise = f"under the {human_bytes(NOISE_FLOOR)} per session noise floor"
    # A predicted OOM point is the slope seen through the limit: noise in one is noise in
    # the other. Two flat runs have no OOM in sight, whatever their extrapolations say.
    oom_noise = ""
    if base.flat and new.flat:
        oom_noise = "neither run grows per session"
    elif base.oom_sessions is None and new.oom_sessions is None and slope_noise:
        oom_noise = f"predicted from slopes {slope_noise}"

    def oom_note(s: RunSummary) -> str:
        if s.oom_sessions is not None:
            return "observed"
        return "predicted" if s.predicted_oom_sessions is not None else ""

    changes: list[MetricChange] = [
        _change(
            key="bytes_per_session",
            label="Bytes per session",
            unit="bytes/session",
            base=base.fit.slope if base.fit else None,
            new=new.fit.slope if new.fit else None,
            worse_when="higher",
            threshold=threshold,
            noise=slope_noise,
        ),
        _change(
            key="oom_point_sessions",
            label="OOM point",
            unit="sessions",
            base=base.oom_point,
            new=new.oom_point,
            worse_when="lower",
            threshold=threshold,
            noise=oom_noise,
            note=f"base {oom_note(base) or 'n/a'}, new {oom_note(new) or 'n/a'}",
        ),
    ]
    for attr, label, unit in _WORSE_WHEN_HIGHER:
        changes.append(
            _change(
                key=attr,
                label=label,
                unit=unit,
                base=_opt(getattr(base, attr)),
                new=_opt(getattr(new, attr)),
                worse_when="higher",
                threshold=threshold,
            )
        )
    if base.latency and new.latency:
        for p in (50, 90, 99):
            changes.append(
                _change(
                    key=f"latency_p{p}_seconds",
                    label=f"Startup latency P{p}",
                    unit="seconds",
                    base=base.latency.total.values.get(p),
                    new=new.latency.total.values.get(p),
                    worse_when="higher",
                    threshold=threshold,
                )
            )
    # Rows where neither run has a value say nothing; keep the table to what was measured.
    kept = [c for c in changes if c.base is not None or c.new is not None]
    return Comparison(
        base=base,
        new=new,
        threshold=threshold,
        changes=tuple(kept),
        slope_ci_overlap=overlap,
        notes=tuple(notes),
    )
