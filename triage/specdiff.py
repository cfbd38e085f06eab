"""Three-way restore of a Deployment spec: undo exactly what triage changed, keep the rest.

During a run other writers act on the same Deployment: a GitOps controller reverts the
memory limit, a person scales it or edits an env var. Writing the journal's copy back over
whatever is there would silently undo their work. Instead the restore computes what triage
changed (original -> what triage applied) and takes back only those changes, on top of the
Deployment as it is now. The rule where both touched the same field: **the other writer's
value stays** (they acted after triage, so theirs is the newer intent), and the restore
reports each such field so nobody is surprised.

Lists of named things (containers, env, volumes, volumeMounts, ports) are compared by name,
as the apiserver's strategic merge does, so another writer adding an env var does not shift
every index after it into a "change".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

#: The key that identifies an item in a list of objects, by the list's field name.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}

Path = tuple[str, ...]
_ABSENT = object()


@dataclass(frozen=True)
class Conflict:
    """A field both triage and another writer changed: theirs was kept."""

    path: str
    triage_set: Any
    now: Any
    original: Any


def _keyed(field: str, items: Any) -> dict[str, Any] | None:
    """A named list as {"key=value": item}; None when it is not one (or names repeat)."""
    key = MERGE_KEYS.get(field)
    if key is None or not isinstance(items, list):
        return None
    if not all(isinstance(i, dict) and key in i for i in items):
        return None
    out = {f"{key}={i[key]}": i for i in items}
    return out if len(out) == len(items) else None


def changes(before: Any, after: Any, path: Path = ()) -> dict[Path, tuple[Any, Any]]:
    """{path: (before, after)} at the coarsest level that differs (absent: _ABSENT).

    A map key or a named-list item present on one side only is one change holding the whole
    value, so taking it back removes or restores the whole item.
    """
    if before == after:
        return {}
    if isinstance(before, dict) and isinstance(after, dict):
        out: dict[Path, tuple[Any, Any]] = {}
        for k in before.keys() | after.keys():
            b, a = before.get(k, _ABSENT), after.get(k, _ABSENT)
            if b is _ABSENT or a is _ABSENT:
                out[(*path, k)] = (b, a)
                continue
            kb, ka = _keyed(k, b), _keyed(k, a)
            if kb is not None and ka is not None:
                for name in kb.keys() | ka.keys():
                    ib, ia = kb.get(name, _ABSENT), ka.get(name, _ABSENT)
                    sub = (*path, k, f"[{name}]")
                    if ib is _ABSENT or ia is _ABSENT:
                        out[sub] = (ib, ia)
                    else:
                        out.update(changes(ib, ia, sub))
            else:
                out.update(changes(b, a, (*path, k)))
        return out
    return {path: (before, after)}


def lookup(doc: Any, path: Path) -> Any:
    """The value at `path` in `doc`, or _ABSENT."""
    node = doc
    for part in path:
        if part.startswith("["):
            key, _, name = part[1:-1].partition("=")
            if not isinstance(node, list):
                return _ABSENT
            node = next(
                (e for e in node if isinstance(e, dict) and str(e.get(key)) == name), _ABSENT
            )
        elif isinstance(node, dict):
            node = node.get(part, _ABSENT)
        else:
            return _ABSENT
        if node is _ABSENT:
            return _ABSENT
    return node


def three_way(
    original: dict[str, Any], applied: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], list[Conflict]]:
    """`current` with triage's changes (original -> applied) taken back.

    A change is taken back only where `current` still holds what triage applied; where it
    holds something else, another writer changed the same field and their value is kept.
    """
    result = copy.deepcopy(current)
    conflicts: list[Conflict] = []
    pending = sorted(changes(original, applied).items())
    while pending:
        path, (was, set_) = pending.pop(0)
        here = lookup(current, path)
        if _same(here, set_) or (was is _ABSENT and _covers(here, set_)):
            # Still what triage set (an item it added may have gained defaults): take it back.
            _assign(result, path, was, original)
        elif was is _ABSENT and here is not _ABSENT and path and path[-1].startswith("["):
            # An item triage added to a named list (a sidecar, an env var) that someone
            # else then changed: theirs now, kept whole; removing its fields one by one
            # would leave an item without even its name.
            conflicts.append(Conflict(_show(path), _plain(set_), _plain(here), None))
        elif was is _ABSENT and here is not _ABSENT and _parts(path, set_):
            # Triage added a map or list that another writer then added to: take back
            # triage's own entries one by one.
            pending[:0] = [(p, (_ABSENT, v)) for p, v in _parts(path, set_)]
        elif not _same(here, was):
            conflicts.append(Conflict(_show(path), _plain(set_), _plain(here), _plain(was)))
    return result, conflicts


def _parts(path: Path, value: Any) -> list[tuple[Path, Any]]:
    if isinstance(value, dict):
        return [((*path, k), v) for k, v in value.items()]
    keyed = _keyed(path[-1], value) if path else None
    return [((*path, f"[{n}]"), item) for n, item in (keyed or {}).items()]


def _covers(here: Any, set_: Any) -> bool:
    """`here` holds everything in `set_` (and maybe more: the apiserver's defaults)."""
    if isinstance(set_, dict):
        return isinstance(here, dict) and all(
            k in here and _covers(here[k], v) for k, v in set_.items()
        )
    if isinstance(set_, list):
        return (
            isinstance(here, list)
            and len(here) == len(set_)
            and all(_covers(h, v) for h, v in zip(here, set_, strict=True))
        )
    return _same(here, set_)


def _same(a: Any, b: Any) -> bool:
    return a is b if (a is _ABSENT or b is _ABSENT) else bool(a == b)


def _plain(v: Any) -> Any:
    return None if v is _ABSENT else v


def _show(path: Path) -> str:
    return ".".join(path).replace(".[", "[")


def _assign(doc: dict[str, Any], path: Path, value: Any, original: Any) -> None:
    """Set (or, for _ABSENT, remove) the value at `path`; parents triage created go too."""
    parent: Any = lookup(doc, path[:-1]) if len(path) > 1 else doc
    if parent is _ABSENT:
        if value is _ABSENT:
            return  # removing something whose parent is already gone
        _assign(doc, path[:-1], {} if not path[-1].startswith("[") else [], original)
        parent = lookup(doc, path[:-1])
    last = path[-1]
    if last.startswith("["):
        key, _, name = last[1:-1].partition("=")
        index = next(
            (i for i, e in enumerate(parent) if isinstance(e, dict) and str(e.get(key)) == name),
            None,
        )
        if value is _ABSENT:
            if index is not None:
                del parent[index]
        elif index is None:
            parent.append(copy.deepcopy(value))
        else:
            parent[index] = copy.deepcopy(value)
    elif value is _ABSENT:
        parent.pop(last, None)
    else:
        parent[last] = copy.deepcopy(value)
    if (
        value is _ABSENT
        and len(path) > 1
        and parent in ({}, [])
        and lookup(original, path[:-1]) is _ABSENT
    ):
        # A map or list that only held what triage added (volumeMounts on a container that
        # had none): leave it absent, as it was.
        _assign(doc, path[:-1], _ABSENT, original)
