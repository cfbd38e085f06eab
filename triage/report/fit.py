"""Fitting memory against load: bytes per session, where the line meets the limit, a limit.

The central estimate is bytes per session: an ordinary least squares fit of memory against
sessions created, over the batches before the first restart (a restart resets the heap, so
rows after it would bend the line). With a 95% interval from the t distribution, because
"2.6 KiB per session" from five noisy batches means little without its width. When a run
varied the size of the objects it created (a session-shape sweep), a second fit separates
what each object costs from what each byte of it costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from triage.quantity import MI, ceil_mi

#: Sessions in the upstream production cluster whose operator kept OOMing; the default target
#: for a limit recommendation when the run itself never reached an OOM.
UPSTREAM_SESSIONS = 4319
#: Extra room on top of the fitted requirement: GC timing and relists make real peaks noisier
#: than a straight line.
DEFAULT_HEADROOM = 0.20
CONFIDENCE = 0.95


#: A fitted slope under this many bytes per session is noise, not growth: the bound the
#: profiler-neutrality check holds two runs of the same load to (bench/profiler_neutrality.py).
#: Naming a site as the cause of growth that is not there, or an OOM point extrapolated from
#: it, is worse than saying there is none.
NOISE_FLOOR = 150.0


@dataclass(frozen=True, slots=True)
class Fit:
    """memory = intercept + slope * sessions, by ordinary least squares."""

    intercept: float
    slope: float
    #: 95% confidence interval of the slope; None with fewer than three points, where the
    #: interval is undefined rather than merely wide.
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

    def reaches(self, limit: float) -> float | None:
        """Sessions at which the fitted line meets `limit`; None when it never does."""
        if self.slope <= 0:
            return None
        return max(0.0, (limit - self.intercept) / self.slope)


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


@dataclass(frozen=True, slots=True)
class ObjectByteFit:
    """memory = a + per_object * sessions + per_byte * payload bytes (a session-shape sweep)."""

    intercept: float
    per_object: float
    per_byte: float
    n: int
    r2: float | None


def fit_object_and_bytes(
    sessions: Sequence[float], payload: Sequence[float], y: Sequence[float]
) -> ObjectByteFit | None:
    """Two-variable OLS; None unless the object sizes varied enough to tell the two apart."""
    n = len(sessions)
    if n < 4:
        return None
    a = np.column_stack([np.ones(n), np.asarray(sessions, float), np.asarray(payload, float)])
    if np.linalg.matrix_rank(a) < 3 or np.linalg.cond(a) > 1e12:
        return None  # sizes never varied: bytes are proportional to objects
    ys = np.asarray(y, float)
    coef, *_ = np.linalg.lstsq(a, ys, rcond=None)
    resid = ys - a @ coef
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else None
    return ObjectByteFit(float(coef[0]), float(coef[1]), float(coef[2]), n, r2)


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


def default_target(*, oom_sessions: float | None) -> tuple[int, str]:
    if oom_sessions:
        return int(2 * oom_sessions), "2x OOM point"
    return UPSTREAM_SESSIONS, "upstream production"


def recommend_limit(
    *,
    fit: Fit,
    target_sessions: int,
    target_source: str,
    headroom: float = DEFAULT_HEADROOM,
    intercept: float | None = None,
) -> Recommendation:
    """Limit for `target_sessions`: base + slope x target, plus headroom, in whole Mi.

    `intercept` overrides the fitted base, e.g. with a profiler's fixed cost taken out.
    """
    slope = fit.slope_ci[1] if fit.slope_ci else fit.slope
    slope = max(slope, 0.0)
    base = fit.intercept if intercept is None else intercept
    required = max(base + slope * target_sessions, 0.0)
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
