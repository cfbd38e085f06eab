"""Byte quantities as Kubernetes writes them, and as a reader wants to see them.

Kept here rather than borrowed from the cluster side because the report must render from a
run directory alone; a quantity parser is small enough to own twice.
"""

from __future__ import annotations

import math
import re

MI = 1024 * 1024

_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kMGT]i?|Ki)?\s*$")


def parse_bytes(text: object) -> int:
    """Parse "128Mi", "1.5Gi", "4Ki", "500M" or a plain number of bytes."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0 or not math.isfinite(text):
            raise ValueError(f"not a byte quantity: {text!r}")
        return int(text)
    m = _QUANTITY.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not a byte quantity: {text!r} (expected e.g. 128Mi, 4Ki, 1Gi)")
    number, suffix = m.group(1), m.group(2) or ""
    return int(float(number) * _SUFFIXES[suffix])


def ceil_mi(n_bytes: float) -> str:
    """Round up to a whole number of MiB, written as a Kubernetes quantity."""
    return f"{max(1, math.ceil(n_bytes / MI))}Mi"


def human_bytes(n_bytes: float | None, *, signed: bool = False) -> str:
    """Binary units with three significant digits: what a reviewer can compare at a glance."""
    if n_bytes is None or not math.isfinite(n_bytes):
        return "n/a"
    sign = ""
    if n_bytes < 0:
        sign = "-"
    elif signed:
        sign = "+"
    value = abs(float(n_bytes))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "B":
                return f"{sign}{value:.0f} B"
            return f"{sign}{value:.3g} {unit}" if value < 100 else f"{sign}{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
