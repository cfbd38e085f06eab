"""The session cache: a few dozen bytes per terminal session instead of its whole object.

Upstream memory grew with every AgenticSession ever created, although almost all of them
are terminal (Completed, Failed, Stopped) and reconcile does nothing for them unless a user
asks for a restart. So the transform keeps, for a terminal session, only its uid (16 raw
bytes), numeric resourceVersion, phase, desired-phase annotation and deletion mark, packed
into one 25-byte `bytes`; the store nests them per namespace (one interned namespace string,
then name -> bytes) so the key string is not held twice. A non-terminal session keeps a
small `SessionView` with the fields its reconcile reads; everything else (spec, prompt,
conditions) is read live from the apiserver when a write is due.

A namespace that holds only terminal sessions keeps them in a single blob (see
`_SMALL_BLOB`), so the per-session cost is ~40 bytes plus a share of the namespace.
"""

from __future__ import annotations

import struct
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from agentic_operator import contract
from agentic_operator.contract import (
    DESIRED_PHASE_ANNOTATION,
    STOP_REASON_ANNOTATION,
    TERMINAL_PHASES,
)

__all__ = [
    "DESIRED_PHASE_ANNOTATION",
    "PHASES",
    "STOP_REASON_ANNOTATION",
    "TERMINAL_PHASES",
    "SessionStore",
    "SessionValue",
    "SessionView",
    "parse_time",
    "transform_full",
    "transform_lean",
    "view",
]

# The packed code of a phase is its index; "" (no status yet) is code 0.
PHASES = ("", *contract.PHASES)
_PHASE_CODE = {p: i for i, p in enumerate(PHASES)}
_DESIRED = ("", "Running", "Stopped")
_DESIRED_CODE = {d: i for i, d in enumerate(_DESIRED)}

# uid, resourceVersion, flags (phase: bits 0-2, desired: bits 3-4, deleting: bit 5)
_PACK = struct.Struct("<16sQB")
_MAX_RV = 2**64 - 1


class SessionView(NamedTuple):
    """What reconcile reads from the cache; times are epoch seconds or None."""

    uid: str
    resource_version: str
    phase: str
    desired_phase: str
    deleting: bool
    generation: int = 0
    observed_generation: int = 0
    created: float | None = None
    start_time: float | None = None
    last_activity: float | None = None
    inactivity_timeout: int | None = None
    stop_reason: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


SessionValue = bytes | SessionView | dict[str, Any]
"""Stored value: packed terminal bytes, a SessionView, or (full mode) the raw object."""


def parse_time(value: Any) -> float | None:
    """RFC 3339 as the apiserver writes it -> epoch seconds; None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _from_object(obj: dict[str, Any]) -> SessionView:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    ann = meta.get("annotations") or {}
    timeout = spec.get("inactivityTimeout")
    return SessionView(
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        phase=str(status.get("phase") or ""),
        desired_phase=str(ann.get(DESIRED_PHASE_ANNOTATION) or "").strip(),
        deleting=bool(meta.get("deletionTimestamp")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        created=parse_time(meta.get("creationTimestamp")),
        start_time=parse_time(status.get("startTime")),
        last_activity=parse_time(status.get("lastActivityTime")),
        inactivity_timeout=timeout if isinstance(timeout, int) and timeout >= 0 else None,
        stop_reason=str(ann.get(STOP_REASON_ANNOTATION) or ""),
    )


def _pack(v: SessionView) -> bytes | None:
    """25 bytes for a terminal session, or None when a field does not fit the format."""
    if v.phase not in _PHASE_CODE or v.desired_phase not in _DESIRED_CODE:
        return None
    if not v.resource_version.isdigit():
        return None
    rv = int(v.resource_version)
    if rv > _MAX_RV:
        return None
    try:
        uid = uuid.UUID(v.uid).bytes
    except ValueError:
        return None
    flags = _PHASE_CODE[v.phase] | (_DESIRED_CODE[v.desired_phase] << 3) | (int(v.deleting) << 5)
    return _PACK.pack(uid, rv, flags)


def _unpack(data: bytes) -> SessionView:
    uid, rv, flags = _PACK.unpack(data)
    return SessionView(
        uid=str(uuid.UUID(bytes=uid)),
        resource_version=str(rv),
        phase=PHASES[flags & 0b111],
        desired_phase=_DESIRED[(flags >> 3) & 0b11],
        deleting=bool(flags & 0b100000),
    )


def transform_lean(obj: dict[str, Any]) -> SessionValue:
    """Informer transform: packed bytes when terminal, otherwise the small view."""
    v = _from_object(obj)
    if v.terminal:
        packed = _pack(v)
        if packed is not None:
            return packed
    return v


def transform_full(obj: dict[str, Any]) -> SessionValue:
    """The unfixed upstream behaviour, kept to demonstrate the OOM: the whole object."""
    return obj


def view(value: SessionValue) -> SessionView:
    if isinstance(value, bytes):
        return _unpack(value)
    if isinstance(value, SessionView):
        return value
    return _from_object(value)


# A namespace whose terminal sessions fit in this many bytes keeps them in one blob of
# [name length][name][25-byte record] entries instead of a dict of str -> bytes: about 40
# bytes per session instead of ~150. Upstream namespaces hold a handful of sessions each.
_SMALL_BLOB = 2048


def _blob_find(blob: bytes, name: bytes) -> int:
    """Offset of `name`'s entry in `blob`, or -1."""
    i, end, n = 0, len(blob), len(name)
    while i < end:
        length = blob[i]
        if length == n and blob[i + 1 : i + 1 + n] == name:
            return i
        i += 1 + length + _PACK.size
    return -1


def _blob_entry(name: bytes, record: bytes) -> bytes:
    return bytes((len(name),)) + name + record


def _blob_items(blob: bytes) -> Iterator[tuple[str, bytes]]:
    i, end = 0, len(blob)
    while i < end:
        length = blob[i]
        start = i + 1 + length
        yield blob[i + 1 : start].decode(), blob[start : start + _PACK.size]
        i = start + _PACK.size


def _compactable(value: SessionValue, name: str) -> bool:
    return isinstance(value, bytes) and len(value) == _PACK.size and len(name.encode()) < 256


class SessionStore:
    """Store protocol for the session informer: namespace -> blob or {name: value}.

    Not thread-safe by itself; the informer serialises access under its own lock.
    """

    __slots__ = ("_by_ns", "_len")

    def __init__(self) -> None:
        self._by_ns: dict[str, bytes | dict[str, SessionValue]] = {}
        self._len = 0

    @staticmethod
    def _split(key: str) -> tuple[str, str]:
        ns, sep, name = key.partition("/")
        if not sep:
            raise KeyError(f"session keys are namespace/name, got {key!r}")
        return ns, name

    def get(self, key: str) -> SessionValue | None:
        ns, name = self._split(key)
        entry = self._by_ns.get(ns)
        if entry is None:
            return None
        if isinstance(entry, dict):
            return entry.get(name)
        nb = name.encode()
        i = _blob_find(entry, nb)
        if i < 0:
            return None
        start = i + 1 + len(nb)
        return entry[start : start + _PACK.size]

    def put(self, key: str, value: SessionValue) -> None:
        ns, name = self._split(key)
        entry = self._by_ns.get(ns)
        compact = _compactable(value, name)
        if entry is None:
            self._len += 1
            if compact:
                assert isinstance(value, bytes)
                self._by_ns[sys.intern(ns)] = _blob_entry(name.encode(), value)
            else:
                self._by_ns[sys.intern(ns)] = {name: value}
            return
        if isinstance(entry, bytes):
            nb = name.encode()
            i = _blob_find(entry, nb)
            if compact and len(entry) + 1 + len(nb) + _PACK.size <= _SMALL_BLOB:
                assert isinstance(value, bytes)
                if i < 0:
                    self._by_ns[ns] = entry + _blob_entry(nb, value)
                    self._len += 1
                else:
                    start = i + 1 + len(nb)
                    self._by_ns[ns] = entry[:start] + value + entry[start + _PACK.size :]
                return
            entry = self._by_ns[ns] = dict(_blob_items(entry))
        if name not in entry:
            self._len += 1
        entry[name] = value
        if compact:
            self._maybe_compact(ns, entry)

    def delete(self, key: str) -> SessionValue | None:
        ns, name = self._split(key)
        entry = self._by_ns.get(ns)
        if entry is None:
            return None
        old: SessionValue | None
        if isinstance(entry, bytes):
            nb = name.encode()
            i = _blob_find(entry, nb)
            if i < 0:
                return None
            start = i + 1 + len(nb)
            old = entry[start : start + _PACK.size]
            rest = entry[:i] + entry[start + _PACK.size :]
            if rest:
                self._by_ns[ns] = rest
            else:
                del self._by_ns[ns]
            self._len -= 1
            return old
        old = entry.pop(name, None)
        if old is None:
            return None
        self._len -= 1
        if not entry:
            del self._by_ns[ns]
        else:
            self._maybe_compact(ns, entry)
        return old

    def _maybe_compact(self, ns: str, entry: dict[str, SessionValue]) -> None:
        # Back to a blob once a namespace holds only small terminal records again.
        if len(entry) * (1 + _PACK.size + 64) > _SMALL_BLOB:
            return
        if not all(_compactable(v, k) for k, v in entry.items()):
            return
        parts = [_blob_entry(k.encode(), v) for k, v in entry.items() if isinstance(v, bytes)]
        blob = b"".join(parts)
        if len(blob) <= _SMALL_BLOB:
            self._by_ns[ns] = blob

    def keys(self) -> Iterator[str]:
        # Materialised per namespace so a concurrent put cannot break the iteration.
        for ns, entry in list(self._by_ns.items()):
            names = [n for n, _ in _blob_items(entry)] if isinstance(entry, bytes) else list(entry)
            for name in names:
                yield f"{ns}/{name}"

    def namespaces(self) -> int:
        return len(self._by_ns)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        return self.keys()
