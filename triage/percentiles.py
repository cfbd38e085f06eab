"""Nearest-rank percentiles: always an observed value, no interpolation to argue about.

The agent-sandbox stress tool reports startup latency this way; the burst live view, the
report and the CI budgets all use this one definition so their P99s agree to the digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["nearest_rank"]


def nearest_rank(values: Sequence[float], pct: float) -> float:
    """The smallest value with at least `pct` percent of the values at or below it."""
    if not values:
        raise ValueError("nearest_rank of an empty sequence")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]
