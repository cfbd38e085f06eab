"""triage.percentiles: nearest rank, always an observed value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage.percentiles import nearest_rank

pytestmark = pytest.mark.unit


def test_nearest_rank_known_values() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert nearest_rank(values, 30) == 20.0
    assert nearest_rank(values, 40) == 20.0
    assert nearest_rank(values, 50) == 35.0
    assert nearest_rank(values, 100) == 50.0
    assert nearest_rank([7.0], 99) == 7.0
    ten = [float(v) for v in range(1, 11)]
    assert [nearest_rank(ten, p) for p in (50, 90, 99)] == [5.0, 9.0, 10.0]
    with pytest.raises(ValueError):
        nearest_rank([], 50)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0.1, 100))
def test_nearest_rank_is_an_observed_value_at_the_right_rank(
    values: list[float], pct: float
) -> None:
    v = nearest_rank(values, pct)
    assert v in values
    assert sum(1 for x in values if x <= v) >= math.ceil(pct / 100 * len(values)) - 1e-9
