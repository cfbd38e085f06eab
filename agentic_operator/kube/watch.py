"""A watch response as an iterator of events that another thread can abort.

Informers must stop within a second and must never buffer a whole watch body, so the
stream parses one newline-delimited JSON event at a time from whatever the socket has
(`read1`, never a blocking fill of a fixed-size buffer), and `close()` shuts the socket
down underneath a blocked read instead of waiting for the next event or the timeout.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error

from agentic_operator.kube.errors import TransportError

__all__ = ["WatchEvent", "WatchStream"]

WatchEvent = tuple[str, dict[str, Any]]

_READ_SIZE = 64 * 1024
# A single object is at most ~1.5 MB in etcd; anything far larger is a broken stream.
_MAX_LINE = 16 * 1024 * 1024


class WatchStream:
    """Iterate for `(type, object)`; types are ADDED, MODIFIED, DELETED, BOOKMARK, ERROR."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, *, what: str = "") -> None:
        self._resp = resp
        self._what = what
        self._lock = threading.Lock()
        self._closed = False
        self._reading = False
        self._released = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Abort the stream; safe from any thread, idempotent, returns immediately."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._reading:
                self._release_locked()
                return
            # Shut the socket down under the blocked reader; it sees EOF at once.
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                self._resp.shutdown()

    def _release_locked(self) -> None:
        if self._released:
            return
        self._released = True
        # An aborted or half-read stream cannot be reused: drop the connection.
        with contextlib.suppress(OSError, _Urllib3Error):
            self._resp.close()
        self._resp.release_conn()

    def __iter__(self) -> Iterator[WatchEvent]:
        with self._lock:
            if self._closed or self._reading:
                return
            self._reading = True
        try:
            yield from self._events()
        finally:
            with self._lock:
                self._reading = False
                self._closed = True
                self._release_locked()

    def _events(self) -> Iterator[WatchEvent]:
        pending: list[bytes] = []
        pending_len = 0
        while True:
            try:
                chunk = self._resp.read1(_READ_SIZE)
            except (_Urllib3Error, OSError, ValueError) as e:
                if self._closed:
                    return
                raise TransportError(f"watch {self._what}: {e}") from e
            if not chunk:
                if self._closed:
                    return
                # A clean end of stream is the server-side timeout: the caller re-watches.
                return
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    break
                piece = chunk[start:nl]
                start = nl + 1
                if pending:
                    pending.append(piece)
                    line = b"".join(pending)
                    pending.clear()
                    pending_len = 0
                else:
                    line = piece
                if line.strip():
                    yield self._decode(line)
                if self._closed:
                    return
            if start < len(chunk):
                pending.append(chunk[start:])
                pending_len += len(chunk) - start
                if pending_len > _MAX_LINE:
                    raise TransportError(f"watch {self._what}: event larger than {_MAX_LINE} bytes")

    def _decode(self, line: bytes) -> WatchEvent:
        try:
            ev = json.loads(line)
            etype = ev["type"]
            obj = ev["object"]
        except (ValueError, KeyError, TypeError) as e:
            raise TransportError(f"watch {self._what}: malformed event") from e
        if not isinstance(etype, str) or not isinstance(obj, dict):
            raise TransportError(f"watch {self._what}: malformed event")
        return etype, obj

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
