"""Create-or-converge for objects the operator owns but does not cache.

RoleBindings, Roles, ServiceAccounts and LimitRanges are written from a desired manifest
and never watched (caching them would cost memory per project and per session). So every
write is create-then-compare: an object that already matches costs one failed create and
one GET, and nothing is written; one that differs in the fields the operator owns is
brought in line without touching anything else on it (other labels, other owners).
"""

from __future__ import annotations

from typing import Any

from agentic_operator.kube import (
    AlreadyExistsError,
    ConflictError,
    KubeClient,
    KubeError,
    NotFoundError,
)

__all__ = ["ensure_object"]

_CONVERGE_ATTEMPTS = 10
Obj = dict[str, Any]


def _differs(existing: Obj, desired: Obj, fields: tuple[str, ...]) -> bool:
    if any(existing.get(f) != desired.get(f) for f in fields):
        return True
    em = existing.get("metadata") or {}
    dm = desired["metadata"]
    labels = em.get("labels") or {}
    if any(labels.get(k) != v for k, v in (dm.get("labels") or {}).items()):
        return True
    want_uids = {r["uid"] for r in dm.get("ownerReferences") or ()}
    have_uids = {r.get("uid") for r in em.get("ownerReferences") or () if isinstance(r, dict)}
    return not want_uids <= have_uids


def ensure_object(
    client: KubeClient,
    collection: str,
    desired: Obj,
    *,
    fields: tuple[str, ...],
    immutable: tuple[str, ...] = (),
) -> bool:
    """Create `desired`, or bring an existing object's `fields`, labels and owner in line.

    Returns True when the object exists as desired afterwards. A difference in an
    `immutable` field (a RoleBinding's roleRef) means delete and create again.
    """
    path = f"{collection}/{desired['metadata']['name']}"
    for _ in range(_CONVERGE_ATTEMPTS):
        try:
            client.create(collection, desired)
            return True
        except AlreadyExistsError:
            pass
        existing = client.get_or_none(path)
        if existing is None:
            continue
        if not _differs(existing, desired, fields + immutable):
            return True
        if any(existing.get(f) != desired.get(f) for f in immutable):
            client.delete_if_present(path)
            continue
        merged = dict(existing)
        for f in fields:
            merged[f] = desired.get(f)
        meta = dict(existing.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **(desired["metadata"].get("labels") or {})}
        refs = [r for r in meta.get("ownerReferences") or () if isinstance(r, dict)]
        have = {r.get("uid") for r in refs}
        refs += [
            r for r in desired["metadata"].get("ownerReferences") or () if r["uid"] not in have
        ]
        meta["ownerReferences"] = refs
        merged["metadata"] = meta
        try:
            client.replace(path, merged)
            return True
        except (ConflictError, NotFoundError):
            continue
    raise KubeError(f"could not converge {path}")
