"""triage.report.fit: OLS and its interval, per-object and per-byte costs, the limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tests.report.synthetic import MI
from triage.report.fit import fit_object_and_bytes, fit_ols, recommend_limit

pytestmark = pytest.mark.unit


def test_fit_matches_scipy_linregress_and_t_interval() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(1, 11) * 500.0
    y = 40 * MI + 25_000 * x + rng.normal(0, 200_000, size=x.size)
    fit = fit_ols(list(x), list(y))
    assert fit is not None
    ref = stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope)
    assert fit.intercept == pytest.approx(ref.intercept)
    assert fit.r2 == pytest.approx(ref.rvalue**2)
    half = stats.t.ppf(0.975, x.size - 2) * ref.stderr
    assert fit.slope_ci == pytest.approx((ref.slope - half, ref.slope + half))
    assert fit.reaches(128 * MI) == pytest.approx((128 * MI - fit.intercept) / fit.slope)


def test_fit_degenerate_inputs() -> None:
    assert fit_ols([], []) is None
    assert fit_ols([1.0], [2.0]) is None
    assert fit_ols([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None  # x does not vary
    two = fit_ols([0.0, 10.0], [0.0, 20.0])
    assert two is not None and two.slope == pytest.approx(2.0) and two.slope_ci is None
    flat = fit_ols([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert flat is not None and flat.reaches(10.0) is None


def test_recommended_limit_uses_upper_ci_and_rounds_up_to_mi() -> None:
    fit = fit_ols([1000.0, 2000.0, 3000.0, 4000.0], [60e6, 85e6, 111e6, 134e6])
    assert fit is not None and fit.slope_ci is not None
    rec = recommend_limit(fit=fit, target_sessions=8000, target_source="option", headroom=0.2)
    expected = (fit.intercept + fit.slope_ci[1] * 8000) * 1.2
    assert rec.quantity == f"{math.ceil(expected / MI)}Mi"
    assert rec.limit_bytes >= expected > rec.limit_bytes - MI
    # A profiler's fixed cost taken out of the base lowers the limit by about that much.
    lean = recommend_limit(
        fit=fit, target_sessions=8000, target_source="option", headroom=0.2,
        intercept=fit.intercept - 12 * MI,
    )  # fmt: skip
    assert rec.limit_bytes - lean.limit_bytes == pytest.approx(1.2 * 12 * MI, abs=MI)


def test_per_object_and_per_byte_costs_are_separated_by_a_shape_sweep() -> None:
    # Alternating shapes: 500 sessions of 5,800 B, then 500 of 300 B, and so on.
    sessions, payload, memory = [], [], []
    total_s = total_b = 0.0
    for batch in range(8):
        total_s += 500
        total_b += 500 * (5800 if batch % 2 == 0 else 300)
        sessions.append(total_s)
        payload.append(total_b)
        memory.append(30 * MI + 400 * total_s + 2.5 * total_b)
    fit = fit_object_and_bytes(sessions, payload, memory)
    assert fit is not None
    assert fit.per_object == pytest.approx(400, rel=1e-6)
    assert fit.per_byte == pytest.approx(2.5, rel=1e-6)
    # Constant object size: bytes are proportional to objects and the two cannot be told apart.
    same = [s * 5800 for s in sessions]
    assert fit_object_and_bytes(sessions, same, memory) is None
