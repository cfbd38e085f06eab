"""Memory quantities: strict for what the user types, exact for what the server says, and
readable for what a reviewer reads. One module for all three, used by the CLI and the report.

Two parsers on purpose. What the user types on the command line ("--mem-limit 128MB") is
parsed strictly: the upstream reproducer passed such strings straight to `kubectl set
resources`, so a typo surfaced half-way through a run as an apiserver error, after the
Deployment had already been changed. Here a bad value is one line naming the accepted forms
before anything touches the cluster. What the server returns (an existing request of "0.5Gi"
or "100M", even "500m" millibytes) is parsed like the apiserver does, with Decimal, so the
request-versus-limit comparison never rounds the wrong way.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from triage.errors import UsageError

__all__ = [
    "ACCEPTED_FORMS",
    "MI",
    "MIN_MEMORY_BYTES",
    "QuantityError",
    "ceil_mi",
    "format_bytes",
    "human_bytes",
    "parse_kube_quantity",
    "parse_memory",
    "parse_quantity_bytes",
]

MI = 2**20


class QuantityError(UsageError, ValueError):
    """Not a quantity; the message names the accepted forms."""


ACCEPTED_FORMS = (
    "accepted forms: a whole number of bytes with an optional binary suffix Ki, Mi, Gi, Ti "
    "or decimal suffix k, M, G, T, e.g. 128Mi, 1Gi, 512M, 134217728"
)
#: Below this no Python process starts: the run would only measure a crash loop.
MIN_MEMORY_BYTES = 16 * 2**20

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
# What a person should type for a memory size: no exponents, no milli-bytes, no sign.
_USER = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|k|M|G|T)?$")
# The apiserver's full grammar (resource.Quantity): sign, decimal, binary or exponent suffix.
_SERVER = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def parse_kube_quantity(text: str) -> Decimal:
    """Parse any quantity the apiserver can return, exactly (e.g. "0.5Gi", "1e3", "500m")."""
    m = _SERVER.match(text.strip())
    if m is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity; {ACCEPTED_FORMS}")
    value = Decimal(m.group("num"))
    suffix = m.group("suffix") or ""
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix[:1] in {"e", "E"}:
        return value * (Decimal(10) ** int(suffix[1:]))
    return value * _DECIMAL[suffix]


def parse_quantity_bytes(text: object) -> int:
    """Bytes of a server-side quantity, rounded up as the kubelet rounds memory ("500m" -> 1).

    A plain number (a budgets file's `4096`) is bytes; a bool or a negative is not a size.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise QuantityError(f"{text!r} is not a byte quantity; {ACCEPTED_FORMS}")
    if not isinstance(text, str):
        if text < 0 or not math.isfinite(text):
            raise QuantityError(f"{text!r} is not a byte quantity; {ACCEPTED_FORMS}")
        return math.ceil(text)
    value = parse_kube_quantity(text)
    if value < 0:
        raise QuantityError(f"{text!r} is negative; {ACCEPTED_FORMS}")
    return math.ceil(value)


def parse_memory(text: str, *, option: str = "--mem-limit") -> int:
    """Parse a memory size typed by a user into bytes, or raise a one-line UsageError."""
    raw = text.strip()
    m = _USER.match(raw)
    if m is None:
        raise QuantityError(f"{option} {text!r} is not a memory quantity; {ACCEPTED_FORMS}")
    suffix = m.group("suffix") or ""
    total = Decimal(m.group("num")) * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])
    if total <= 0:
        raise UsageError(f"{option} {text!r} must be greater than zero; {ACCEPTED_FORMS}")
    if total != total.to_integral_value():
        raise UsageError(f"{option} {text!r} is not a whole number of bytes; {ACCEPTED_FORMS}")
    if total < MIN_MEMORY_BYTES:
        raise UsageError(
            f"{option} {text!r} is too small: below {format_bytes(MIN_MEMORY_BYTES)} the "
            f"operator cannot start at all; {ACCEPTED_FORMS}"
        )
    return int(total)


def format_bytes(n: int) -> str:
    """The shortest exact quantity for a byte count: 134217728 -> "128Mi"."""
    if n <= 0:
        return str(n)
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def ceil_mi(n_bytes: float) -> str:
    """Round up to a whole number of MiB, written as a Kubernetes quantity."""
    return f"{max(1, math.ceil(n_bytes / MI))}Mi"


def human_bytes(n_bytes: float | None, *, signed: bool = False) -> str:
    """Binary units with three significant digits: what a reviewer can compare at a glance."""
    if n_bytes is None or not math.isfinite(n_bytes):
        return "n/a"
    sign = "-" if n_bytes < 0 else ("+" if signed else "")
    value = abs(float(n_bytes))
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            if unit == "B":
                return f"{sign}{value:.0f} B"
            return f"{sign}{value:.3g} {unit}" if value < 100 else f"{sign}{value:.0f} {unit}"
        value /= 1024
    return f"{sign}{value:.3g} GiB" if value < 100 else f"{sign}{value:.0f} GiB"
