"""Opt-in memory diagnostics: a memray capture to a file, and a loopback-only debug endpoint.

The upstream reproducer exposed pprof on all interfaces; here nothing debug-related is
ever reachable from outside the pod. memray writes the default (non-aggregated) format
continuously into a directory the Deployment mounts from an emptyDir, so the capture of a
run that ends in an OOMKill survives the container restart and can be copied out. memray
and tracemalloc are only imported/started when enabled: they cost memory themselves.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentic_operator._httpserve import HTTPServerHandle, is_loopback_host, parse_addr, serve

__all__ = [
    "DebugAddressError",
    "MemrayCapture",
    "ProfilingError",
    "memray_capture_path",
    "start_debug_server_if_enabled",
    "start_memray_if_enabled",
    "stop_memray",
]

log = logging.getLogger(__name__)

PROFILE_ENV = "AGENTIC_PROFILE"
PROFILE_DIR_ENV = "AGENTIC_PROFILE_DIR"
DEBUG_ADDR_ENV = "AGENTIC_DEBUG_ADDR"
DEFAULT_PROFILE_DIR = "/profiles"


class DebugAddressError(ValueError):
    """AGENTIC_DEBUG_ADDR is not a loopback host:port."""


class ProfilingError(RuntimeError):
    """memray was requested but cannot run."""


def memray_capture_path(directory: str | Path, *, now: float | None = None) -> Path:
    ts = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return Path(directory) / f"memray-{ts}-{os.getpid()}.bin"


class MemrayCapture:
    """A running memray capture; `stop()` (or leaving a `with` block) finishes the file."""

    def __init__(self, tracker: Any, path: Path) -> None:
        self.tracker = tracker
        self.path = path
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.tracker.__exit__(None, None, None)
        except Exception:
            log.exception("stopping memray failed")

    def __enter__(self) -> MemrayCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_memray_if_enabled(env: Mapping[str, str] | None = None) -> MemrayCapture | None:
    """Start a memray capture when AGENTIC_PROFILE=memray; None when profiling is off."""
    env = os.environ if env is None else env
    mode = env.get(PROFILE_ENV, "").strip().lower()
    if not mode:
        return None
    if mode != "memray":
        raise ProfilingError(f"{PROFILE_ENV}={mode!r} is not supported (only 'memray')")
    try:
        import memray
    except ImportError as e:
        raise ProfilingError("AGENTIC_PROFILE=memray but memray is not installed") from e
    directory = Path(env.get(PROFILE_DIR_ENV) or DEFAULT_PROFILE_DIR)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProfilingError(f"cannot create profile directory {directory}: {e}") from e
    path = memray_capture_path(directory)
    # The default (non-aggregated) format is streamed to the file as the process runs, so
    # the capture of a run that is OOMKilled is still readable afterwards.
    tracker = memray.Tracker(
        file_name=str(path),
        native_traces=False,
        follow_fork=False,
        file_format=memray.FileFormat.ALL_ALLOCATIONS,
    )
    tracker.__enter__()
    log.info("memray capture started: %s", path)
    return MemrayCapture(tracker, path)


def stop_memray(capture: MemrayCapture | None) -> None:
    """Finish a capture started by `start_memray_if_enabled` (None is accepted)."""
    if capture is not None:
        capture.stop()


# -- debug endpoint ---------------------------------------------------------------------------


def _qint(q: Mapping[str, list[str]], name: str, default: int, upper: int = 1000) -> int:
    try:
        return max(1, min(upper, int(q.get(name, [str(default)])[0])))
    except ValueError:
        return default


def _respond(q: Mapping[str, list[str]], doc: dict[str, Any], text: str) -> tuple[int, str, bytes]:
    if q.get("format", [""])[0] == "json":
        return 200, "application/json", json.dumps(doc).encode()
    return 200, "text/plain; charset=utf-8", text.encode()


def _tracemalloc(q: Mapping[str, list[str]]) -> tuple[int, str, bytes]:
    import tracemalloc

    if q.get("stop", [""])[0] in ("1", "true"):
        tracemalloc.stop()
        return 200, "text/plain; charset=utf-8", b"tracemalloc stopped\n"
    started_now = False
    if not tracemalloc.is_tracing():
        tracemalloc.start(_qint(q, "frames", 1, 50))
        started_now = True
    top = _qint(q, "top", 25)
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    stats = snap.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    rows = [
        {
            "file": s.traceback[0].filename,
            "line": s.traceback[0].lineno,
            "bytes": s.size,
            "count": s.count,
        }
        for s in stats[:top]
    ]
    doc = {"started_now": started_now, "traced_bytes": current, "peak_bytes": peak, "top": rows}
    lines = [
        f"tracemalloc: traced={current} peak={peak}"
        + (
            " (just started: allocations before now are not traced; ask again later)"
            if started_now
            else ""
        ),
        *(f"{r['bytes']:>12} {r['count']:>8}  {r['file']}:{r['line']}" for r in rows),
    ]
    return _respond(q, doc, "\n".join(lines) + "\n")


def _gc(q: Mapping[str, list[str]]) -> tuple[int, str, bytes]:
    top = _qint(q, "top", 25)
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    doc = {
        "counts": list(gc.get_count()),
        "thresholds": list(gc.get_threshold()),
        "stats": gc.get_stats(),
        "tracked_objects": sum(counts.values()),
        "modules": len(sys.modules),
        "top_types": [{"type": t, "count": n} for t, n in counts.most_common(top)],
    }
    lines = [
        f"gc counts={gc.get_count()} thresholds={gc.get_threshold()}",
        f"tracked objects={doc['tracked_objects']} modules={doc['modules']}",
        *(f"{n:>10}  {t}" for t, n in counts.most_common(top)),
    ]
    return _respond(q, doc, "\n".join(lines) + "\n")


def start_debug_server_if_enabled(env: Mapping[str, str] | None = None) -> HTTPServerHandle | None:
    """Serve /debug/tracemalloc and /debug/gc on AGENTIC_DEBUG_ADDR, which must be loopback."""
    env = os.environ if env is None else env
    addr = env.get(DEBUG_ADDR_ENV, "").strip()
    if not addr:
        return None
    try:
        parsed = parse_addr(addr)
    except ValueError as e:
        raise DebugAddressError(f"{DEBUG_ADDR_ENV}={addr!r}: {e}") from e
    if parsed is None:
        return None
    host, _port = parsed
    if not is_loopback_host(host):
        raise DebugAddressError(
            f"{DEBUG_ADDR_ENV}={addr!r} refused: the debug endpoint only listens on a "
            "loopback address (e.g. 127.0.0.1:6060); reach it with kubectl port-forward"
        )
    return serve(addr, {"/debug/tracemalloc": _tracemalloc, "/debug/gc": _gc}, name="debug-server")
