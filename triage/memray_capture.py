"""A memray capture, possibly cut off by SIGKILL, as a JSON-able summary with call stacks.

The question a report answers is "which of the operator's own code paths hold the memory
that grows", so each site carries a short stack from the allocation up to the operator's
frame (e.g. `raw_decode <- loads <- decode <- watch_loop`), not only the innermost library
line. The site itself is the first frame outside the standard library and site-packages,
falling back to the innermost library frame when the operator's code is not on the stack.

Without `trace_python_allocators` memray sees pymalloc's 1 MiB arenas (allocated by whatever
object happened to need a new one) and only objects larger than 512 bytes individually;
those arenas are one "<pymalloc arenas>" group here, so nobody reads "1 MiB, 1 allocation"
as a line of code. With it, every object is its own allocation and the per-site figures
name objects.

Frames of the profiler's own machinery (memray, runpy, the launcher) are dropped from
stacks: they are the root of every stack and say nothing about the program.

A capture is read in a child process by `parse_capture_isolated`: a file cut off mid-record
can make memray's reader complain or, in the worst case, abort; neither may take the caller
down. Only stdlib and memray are imported here, so the child starts fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SCHEMA = "triage.memray/2"
TOP_N = 25
#: Frames kept per site's stack: the allocation, the path up to the operator's frame, and a
#: couple of its callers. Longer paths lose frames in the middle (an "elided" entry says
#: how many), never the two ends.
STACK_FRAMES = 8
#: Callers kept above the site frame (the watch loop above the decode, say).
CALLERS = 2
#: How deep memray is asked for; a site deeper than this falls back to the innermost frame.
MAX_DEPTH = 64
#: pymalloc arena sizes: 1 MiB since CPython 3.10, 256 KiB before.
ARENA_SIZES = (1 << 20, 256 << 10)
ARENAS = ("<pymalloc arenas>", "<pymalloc>", 0)
UNKNOWN = ("<unknown>", "<native>", 0)
#: Clock slack (ms) between the header's times and memray's RSS samples.
FINISH_SLACK_MS = 5

KINDS = ("own", "library", "stdlib", "entry", "arena", "unknown")
_PROFILER_FILES = ("/memray/", "memray_launch.py", "/runpy.py", "<frozen runpy>")

Frame = tuple[str, str, int]


class CaptureError(Exception):
    """A capture could not be read; the run goes on without it."""


def frame_kind(file: str) -> str:
    """ "profiler", "stdlib", "library", "entry" or "own" for a frame's file name.

    By path, because the capture comes from another machine (the pod): site-packages or
    dist-packages is a library; <frozen ...>, <string> (code made by exec, e.g. dataclass
    __init__) and lib/pythonX.Y are the standard library; a console script (`venv/bin/kopf`,
    no .py) is an entry point, the root of every stack and never the why; the rest is the
    program's.
    """
    if any(marker in file for marker in _PROFILER_FILES):
        return "profiler"
    if "/bin/" in file and not file.endswith(".py"):
        return "entry"
    if "site-packages" in file or "dist-packages" in file:
        return "library"
    if file.startswith("<") or "/lib/python3" in file or "/lib64/python3" in file:
        return "stdlib"
    return "own"


def _site_index(kinds: list[str]) -> int | None:
    for wanted in ("own", "library"):
        if wanted in kinds:
            return kinds.index(wanted)
    return 0 if kinds else None


def short_stack(
    frames: list[Frame], *, max_frames: int = STACK_FRAMES, callers: int = CALLERS
) -> tuple[Frame, str, list[dict[str, Any]]]:
    """(site frame, site kind, leaf->root stack) for one allocation's Python frames."""
    kept = [(f, frame_kind(f[1])) for f in frames]
    kept = [(f, k) for f, k in kept if k != "profiler"]
    kinds = [k for _, k in kept]
    at = _site_index(kinds)
    if at is None:
        return UNKNOWN, "unknown", []
    site, kind = kept[at]
    path = kept[: at + 1 + callers]
    entries: list[dict[str, Any]] = [
        {"function": str(f[0]), "file": str(f[1]), "line": int(f[2]), "kind": k} for f, k in path
    ]
    if len(entries) > max_frames:
        # Keep the allocation end and the site end; say how much of the middle is gone.
        head = max(1, (max_frames - 1) // 2)
        tail = max_frames - 1 - head
        elided = len(entries) - head - tail
        entries = [
            *entries[:head],
            {"function": "...", "file": "", "line": 0, "kind": "elided", "frames": elided},
            *entries[len(entries) - tail :],
        ]
    return (str(site[0]), str(site[1]), int(site[2])), kind, entries


def live_arenas(
    records: Iterable[Any], *, mmap: int, munmap: int
) -> dict[tuple[int, int], list[int]]:
    """{(stack id, native stack id): [bytes, count]} of pymalloc arenas mapped at the end.

    memray's per-stack aggregation merges an arena with whatever else that stack allocated
    (and reports one allocator for the lot), so arenas are found by replaying the raw
    records: an mmap of exactly an arena's size, until a munmap of the same address. Only
    done without trace_python_allocators, where captures hold few records.
    """
    mapped: dict[int, tuple[tuple[int, int], int]] = {}
    for record in records:
        allocator = int(record.allocator)
        if allocator == mmap and int(record.size) in ARENA_SIZES:
            # Keyed like memray's aggregation: the Python stack and, with --native, the
            # native one (several aggregated records can share a Python stack).
            key = (int(record.stack_id), int(record.native_stack_id))
            mapped[int(record.address)] = (key, int(record.size))
        elif allocator == munmap:
            mapped.pop(int(record.address), None)
    by_stack: dict[tuple[int, int], list[int]] = {}
    for key, size in mapped.values():
        acc = by_stack.setdefault(key, [0, 0])
        acc[0] += size
        acc[1] += 1
    return by_stack


class _Site:
    __slots__ = ("best", "bytes", "count", "kind", "paths", "stack")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.bytes = self.count = self.paths = self.best = 0
        self.stack: list[dict[str, Any]] = []

    def add(self, size: int, count: int, stack: list[dict[str, Any]]) -> None:
        self.bytes += size
        self.count += count
        self.paths += 1
        if size > self.best:  # the stack shown is the heaviest path into this site
            self.best, self.stack = size, stack


def summarize(
    records: Iterable[Any],
    *,
    trace_python_allocators: bool,
    arenas: dict[tuple[int, int], list[int]] | None = None,
    top_n: int | None = TOP_N,
    max_frames: int = STACK_FRAMES,
) -> dict[str, Any]:
    """Heap, allocation count, per-kind totals and top sites of memray allocation records."""
    sites: dict[Frame, _Site] = {}
    by_kind = {k: {"bytes": 0, "count": 0} for k in KINDS}
    heap = count = 0
    arenas = dict(arenas or {})

    def add(site: Frame, kind: str, size: int, n: int, stack: list[dict[str, Any]]) -> None:
        acc = sites.get(site)
        if acc is None:
            acc = sites[site] = _Site(kind)
        acc.add(size, n, stack)
        by_kind[kind]["bytes"] += size
        by_kind[kind]["count"] += n

    for record in records:
        size, n = int(record.size), int(record.n_allocations)
        heap += size
        count += n
        frames = [(str(f), str(p), int(ln)) for f, p, ln in record.stack_trace(MAX_DEPTH)]
        site, kind, stack = short_stack(frames, max_frames=max_frames)
        key = (int(record.stack_id), int(record.native_stack_id))
        arena_bytes, arena_n = arenas.pop(key, (0, 0))
        arena_bytes, arena_n = min(arena_bytes, size), min(arena_n, n)
        if arena_bytes:
            # Which object needed a new arena says little about what fills the arena.
            add(ARENAS, "arena", arena_bytes, arena_n, stack)
            size, n = size - arena_bytes, n - arena_n
        if size or n:
            add(site, kind, size, n, stack)
    ranked = sorted(sites.items(), key=lambda kv: kv[1].bytes, reverse=True)
    if top_n is not None:
        ranked = ranked[:top_n]
    return {
        "heap_bytes": heap,
        "allocations": count,
        "grouping": "objects" if trace_python_allocators else "arenas",
        "sites": len(sites),
        "by_kind": by_kind,
        "top": [
            {
                "function": f,
                "file": file,
                "line": line,
                "bytes": s.bytes,
                "count": s.count,
                "kind": s.kind,
                "paths": s.paths,
                "stack": s.stack,
            }
            for (f, file, line), s in ranked
        ],
    }


def parse_capture(
    path: Path, *, top_n: int | None = TOP_N, max_frames: int = STACK_FRAMES
) -> dict[str, Any]:
    """The heap live at the end of `path`, its top sites with stacks, and the run's facts.

    "Live at the end" is the heap at the moment of the copy for a running operator and the
    heap at death for an OOM-killed one. A superset of memray.json's historical shape
    (heap_bytes, allocations, top[function, file, line, bytes, count], peak_bytes,
    total_allocations, source).
    """
    import memray

    reader = memray.FileReader(str(path))
    try:
        meta = reader.metadata
        tpa = bool(meta.trace_python_allocators)
        arenas = None
        if not tpa and meta.python_allocator.startswith("pymalloc"):
            arenas = live_arenas(
                reader.get_allocation_records(),
                mmap=int(memray.AllocatorType.MMAP),
                munmap=int(memray.AllocatorType.MUNMAP),
            )
        doc = summarize(
            reader.get_leaked_allocation_records(merge_threads=True),
            trace_python_allocators=tpa,
            arenas=arenas,
            top_n=top_n,
            max_frames=max_frames,
        )
        snapshots = list(reader.get_memory_snapshots())
    finally:
        reader.close()
    # The header's end time is rewritten when the tracker stops; a killed process leaves the
    # one written at start (a ms or two after the start time), older than its last RSS
    # sample (memray samples RSS every memory_interval_ms, 10 ms by default).
    start_ms = meta.start_time.timestamp() * 1000
    end_ms = meta.end_time.timestamp() * 1000
    last_ms = snapshots[-1].time if snapshots else None
    if last_ms is not None and last_ms > start_ms + FINISH_SLACK_MS:
        finished = end_ms + FINISH_SLACK_MS >= last_ms
    else:  # killed within its first milliseconds, or no samples: the header alone
        finished = end_ms > start_ms + FINISH_SLACK_MS
    duration = (
        (meta.end_time - meta.start_time).total_seconds()
        if finished or last_ms is None
        else (last_ms - start_ms) / 1000
    )
    return {
        "schema": SCHEMA,
        "source": path.name,
        "capture_bytes": path.stat().st_size,
        **doc,
        "peak_bytes": int(meta.peak_memory),
        "total_allocations": int(meta.total_allocations),
        "trace_python_allocators": tpa,
        "native_traces": bool(meta.has_native_traces),
        "python_allocator": str(meta.python_allocator),
        "finished": finished,
        "truncated": not finished,
        "pid": int(meta.pid),
        "command_line": str(meta.command_line),
        "start_time": meta.start_time.isoformat(),
        "duration_s": duration,
        # memray's RSS samples (every memory_interval_ms): the process's RSS next to the heap.
        "rss_bytes": int(snapshots[-1].rss) if snapshots else None,
        "rss_peak_bytes": max(int(s.rss) for s in snapshots) if snapshots else None,
    }


#: The first bytes of an lz4 frame: a capture memray compressed when its process exited.
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def trim_zero_tail(path: Path, *, chunk: int = 1 << 20) -> int:
    """Cut the zeros at the end of an uncompressed capture; returns how many bytes were cut.

    memray grows a capture in chunks and fills them as it goes, so a capture ends in zeros
    (14 MB of them after 470 MB of records, measured) whether its process was killed or
    exited. memray's reader ignores them, but finds where they start by stepping back one
    byte at a time, each step a seek and a refill of an 8 KiB buffer; it does so every time
    the file is opened, and a read opens it more than once. For that 470 MB capture the
    read took 68 s, 25 of them in the kernel, against 35 s once the zeros were cut
    (bench/memray_read.py, medians of 3). The cut is exactly what the reader would skip
    (`readable_size`), so it reads the same records. An lz4-compressed capture ends in a
    zero end mark, is never padded, and is left alone.
    """
    size, end = path.stat().st_size, readable_size(path, chunk=chunk)
    if end < size:
        with path.open("r+b") as f:
            f.truncate(end)
    return size - end


def readable_size(path: Path, *, chunk: int = 1 << 20) -> int:
    """Where memray's reader stops reading `path`: after its last non-zero byte (the whole
    file for an lz4-compressed capture), found a chunk at a time from the end."""
    with path.open("rb") as f:
        size = end = f.seek(0, os.SEEK_END)
        f.seek(0)
        if f.read(len(LZ4_MAGIC)) == LZ4_MAGIC:
            return size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            kept = f.read(end - start).rstrip(b"\0")
            if kept:
                return start + len(kept)
            end = start
    return 0


def run_isolated(
    argv: list[str],
    path: Path,
    *,
    what: str,
    timeout: float,
    nice: int = 0,
    started: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run a reader of `path` in a child process and return the JSON it prints.

    memray's reader is native code: a capture cut short by an OOM kill can crash it, so it
    never runs in triage's own process. Any failure is a CaptureError naming the file.
    `nice` lowers the child's CPU priority; `started` is then given its PID (to raise it
    again later).
    """
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        if nice > 0:
            with contextlib.suppress(ProcessLookupError):  # already gone: nothing to lower
                os.setpriority(
                    os.PRIO_PROCESS, child.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice
                )
        try:
            if started is not None:
                started(child.pid)
            stdout, stderr = child.communicate(timeout=timeout)
        except BaseException as e:
            # A timeout, a failed callback, Ctrl-C: Popen's exit would wait for the child
            # with no limit, and a reader of a 500 MB capture runs for a minute.
            child.kill()
            child.communicate()
            if not isinstance(e, subprocess.TimeoutExpired):
                raise
            raise CaptureError(
                f"reading memray capture {path.name} took over {timeout:.0f}s"
            ) from e
    proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}, no output"
        raise CaptureError(f"cannot read memray capture {path.name}: {why}")
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as e:
        raise CaptureError(f"memray capture {path.name}: unreadable {what}: {e}") from e
    # memray reports a record cut in half on stderr and keeps what it could read.
    result["truncated"] = bool(result.get("truncated")) or b"ERROR" in proc.stderr
    return result


def parse_capture_isolated(
    path: Path,
    *,
    top_n: int | None = TOP_N,
    max_frames: int = STACK_FRAMES,
    timeout: float = 300,
) -> dict[str, Any]:
    """`parse_capture` in a child process: a broken capture is a CaptureError, never a crash."""
    argv = [sys.executable, "-m", "triage.memray_capture", str(path), "--frames", str(max_frames)]
    if top_n is not None:
        argv += ["--top", str(top_n)]
    return run_isolated(argv, path, what="summary", timeout=timeout)


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m triage.memray_capture")
    parser.add_argument("capture", type=Path)
    parser.add_argument("--top", type=int, default=None, help="sites to keep (default: all)")
    parser.add_argument("--frames", type=int, default=STACK_FRAMES)
    args = parser.parse_args(argv)
    doc = parse_capture(args.capture, top_n=args.top, max_frames=args.frames)
    sys.stdout.write(json.dumps(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
