"""The heap by site at chosen moments of one memray capture, read in a single pass.

A run wants a heap profile per batch, but copying the capture out of the pod at every batch
costs the batch time (and the capture can be tens of MB). memray records every allocation
with the snapshot it happened before, and its temporal records group allocations by the
snapshots they were allocated and freed before; so the capture copied once at the end
holds the heap at every moment it covers. For each requested time, the heap is every
interval allocated at or before the snapshot nearest before that time and not yet freed.
The heap at the very end (at the kill, for an OOM-killed process) comes out of the same pass.

Like `memray_capture`, this runs in a child process (`python -m triage.memray_timeline`):
a capture cut off by SIGKILL can make memray's reader complain or abort. Stdlib and memray
only, so the child starts fast.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from triage.memray_capture import (
    ARENAS,
    MAX_DEPTH,
    STACK_FRAMES,
    TOP_N,
    run_isolated,
    short_stack,
)

Site = tuple[str, str, int]


def _profiles(path: Path, times_ms: list[float], *, top_n: int, max_frames: int) -> dict[str, Any]:
    import memray

    reader = memray.FileReader(str(path))
    try:
        meta = reader.metadata
        snaps = list(reader.get_memory_snapshots())
        if not snaps:
            return {"first_ms": None, "last_ms": None, "at": [None] * len(times_ms), "end": None}
        snap_times = [s.time for s in snaps]
        # The snapshot each moment sees; the last one stands for the end of the capture.
        points = [bisect.bisect_right(snap_times, t) - 1 for t in times_ms]
        points.append(len(snaps) - 1)
        order = sorted(set(p for p in points if p >= 0))
        slot = {p: i for i, p in enumerate(order)}
        k = len(order)
        bytes_: dict[Site, list[int]] = {}
        counts: dict[Site, list[int]] = {}
        stacks: dict[Site, tuple[int, list[dict[str, Any]]]] = {}
        for record in reader.get_temporal_allocation_records(merge_threads=True):
            frames = [(str(f), str(p), int(ln)) for f, p, ln in record.stack_trace(MAX_DEPTH)]
            site, _kind, stack = short_stack(frames, max_frames=max_frames)
            db = bytes_.setdefault(site, [0] * (k + 1))
            dc = counts.setdefault(site, [0] * (k + 1))
            weight = 0
            for iv in record.intervals:
                # Live at snapshot s when allocated_before <= s < deallocated_before.
                lo = bisect.bisect_left(order, iv.allocated_before_snapshot)
                end = iv.deallocated_before_snapshot
                hi = k if end is None else bisect.bisect_left(order, end)
                if lo < hi:
                    db[lo] += iv.n_bytes
                    db[hi] -= iv.n_bytes
                    dc[lo] += iv.n_allocations
                    dc[hi] -= iv.n_allocations
                    weight += iv.n_bytes
            best = stacks.get(site)
            if best is None or weight > best[0]:  # the heaviest path into the site is shown
                stacks[site] = (weight, stack)
        per_point: list[dict[str, Any]] = []
        live: dict[Site, list[int]] = {s: _running(d) for s, d in bytes_.items()}
        live_n: dict[Site, list[int]] = {s: _running(d) for s, d in counts.items()}
        for i, p in enumerate(order):
            ranked = sorted(
                ((s, live[s][i], live_n[s][i]) for s in live if live[s][i] > 0),
                key=lambda x: x[1],
                reverse=True,
            )
            per_point.append(
                {
                    "heap_bytes": sum(b for _, b, _ in ranked),
                    "allocations": sum(n for _, _, n in ranked),
                    "peak_bytes": int(meta.peak_memory),
                    "total_allocations": int(meta.total_allocations),
                    "source": path.name,
                    "python_allocators": bool(meta.trace_python_allocators),
                    "snapshot_ms": snap_times[p],
                    "rss_bytes": int(snaps[p].rss),
                    "top": [
                        {
                            "function": s[0], "file": s[1], "line": s[2], "bytes": b, "count": n,
                            "stack": [
                                {"function": f["function"], "file": f["file"], "line": f["line"]}
                                for f in stacks.get(s, (0, []))[1]
                                if f.get("kind") != "elided"
                            ],
                        }
                        for s, b, n in ranked[:top_n]
                        if s != ARENAS or not meta.trace_python_allocators
                    ],
                }
            )  # fmt: skip
    finally:
        reader.close()
    return {
        "first_ms": snap_times[0],
        "last_ms": snap_times[-1],
        "at": [per_point[slot[p]] if p >= 0 else None for p in points[:-1]],
        "end": per_point[slot[points[-1]]],
    }


def _running(deltas: list[int]) -> list[int]:
    out, total = [], 0
    for d in deltas[:-1]:
        total += d
        out.append(total)
    return out


def profiles_isolated(
    path: Path,
    times_ms: list[float],
    *,
    top_n: int = TOP_N,
    max_frames: int = STACK_FRAMES,
    timeout: float = 600,
    nice: int = 0,
    started: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`_profiles` in a child process: a broken capture is a CaptureError, never a crash.

    `nice` lowers the child's CPU priority: a read that runs while the operator is being
    measured (its cold start) then only takes CPU the measurement leaves idle. `started` is
    given the child's PID, so the priority can be raised back once the measurement ends (the
    parent sets the priority, never the child: a child lowering its own after it started
    could undo a raise that came first).
    """
    argv = [sys.executable, "-m", "triage.memray_timeline", str(path), "--top", str(top_n),
            "--frames", str(max_frames), "--at", *(f"{t:.0f}" for t in times_ms)]  # fmt: skip
    return run_isolated(argv, path, what="timeline", timeout=timeout, nice=nice, started=started)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m triage.memray_timeline")
    p.add_argument("capture", type=Path)
    p.add_argument("--at", nargs="*", type=float, default=[], help="epoch milliseconds")
    p.add_argument("--top", type=int, default=TOP_N)
    p.add_argument("--frames", type=int, default=STACK_FRAMES)
    a = p.parse_args(argv)
    result = _profiles(a.capture, a.at, top_n=a.top, max_frames=a.frames)
    result["nice"] = os.nice(0)  # the priority it ended at, for whoever asked for one
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
