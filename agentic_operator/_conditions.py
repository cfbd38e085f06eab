"""Status conditions with Kubernetes semantics: one entry per type, stable transition times.

The upstream operator appended a condition on every reconcile, so a long-lived session
carried hundreds of entries in etcd and in every cache. Here every write goes through
`set_condition`, which upserts by type (case-insensitively, as upstream compares them),
collapses duplicates left by older writers and caps the array, so its size is bounded by
the number of distinct types no matter how many reconciles run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_CONDITIONS",
    "find_condition",
    "is_true",
    "normalize",
    "now_rfc3339",
    "set_condition",
]

# Upstream uses eight types; the cap only matters for arrays bloated by other writers.
MAX_CONDITIONS = 16

Condition = dict[str, Any]


def now_rfc3339() -> str:
    """The timestamp format the apiserver accepts for date-time fields (second precision)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_text(cond: Condition, key: str, value: str) -> None:
    # Empty strings are left out: the local v1.20 apiserver's CRD validation rejects ""
    # for a string field as if it were null, and an absent field means the same thing.
    if value:
        cond[key] = value
    else:
        cond.pop(key, None)


def normalize(conditions: list[Condition] | None) -> list[Condition]:
    """One entry per type (the last written wins), at most MAX_CONDITIONS, order preserved."""
    if not conditions:
        return []
    latest: dict[str, Condition] = {}
    for cond in conditions:
        if not isinstance(cond, dict):
            continue
        ctype = str(cond.get("type") or "")
        if not ctype:
            continue
        fold = ctype.lower()
        kept = cond
        if cond.get("reason") == "" or cond.get("message") == "":
            kept = {k: v for k, v in cond.items() if v != "" or k not in ("reason", "message")}
        # Re-inserting moves the type to where its most recent entry was appended.
        latest.pop(fold, None)
        latest[fold] = kept
    out = list(latest.values())
    if len(out) > MAX_CONDITIONS:
        out = out[-MAX_CONDITIONS:]
    return out


def find_condition(conditions: list[Condition] | None, ctype: str) -> Condition | None:
    fold = ctype.lower()
    for cond in conditions or ():
        if isinstance(cond, dict) and str(cond.get("type") or "").lower() == fold:
            return cond
    return None


def is_true(conditions: list[Condition] | None, ctype: str) -> bool:
    cond = find_condition(conditions, ctype)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: list[Condition] | None,
    *,
    ctype: str,
    status: str,
    reason: str = "",
    message: str = "",
    observed_generation: int | None = None,
    now: str | None = None,
) -> tuple[list[Condition], bool]:
    """Upsert one condition; returns (new list, whether anything changed).

    lastTransitionTime moves only when the status changes, so watchers can tell how long a
    condition has held; reason, message and observedGeneration are refreshed in place.
    """
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    before = conditions or []
    out = normalize(before)
    changed = len(out) != len(before)
    fold = ctype.lower()
    for i, cond in enumerate(out):
        if str(cond.get("type") or "").lower() != fold:
            continue
        new = dict(cond)
        new["type"] = ctype
        if cond.get("status") != status or not cond.get("lastTransitionTime"):
            new["lastTransitionTime"] = now or now_rfc3339()
        new["status"] = status
        _set_text(new, "reason", reason)
        _set_text(new, "message", message)
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        if new != cond:
            out[i] = new
            changed = True
        return out, changed
    new = {"type": ctype, "status": status, "lastTransitionTime": now or now_rfc3339()}
    _set_text(new, "reason", reason)
    _set_text(new, "message", message)
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    out.append(new)
    if len(out) > MAX_CONDITIONS:
        out = out[-MAX_CONDITIONS:]
    return out, True
