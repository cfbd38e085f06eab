"""The program bench/memray_modes.py profiles: an informer-like cache of AgenticSessions.

Each session arrives as two watch events, the way the loader writes it (created, then its
status written): both are decoded with json.loads and the second replaces the first in a
dict, so the cache holds one parsed ~5-6 KB object per session and the first parse is
garbage. The call chain is fixed and known, so the parser's attribution can be checked:
watch_loop -> handle_event -> decode -> json.loads, and handle_event -> store.

Standalone (stdlib only, no triage import): what it allocates is the workload's, whatever
runs it (plain python, memray_launch.py, `python -m memray run`). It reads anonymous
memory, time and the capture file's size at the start of the loop, half-way and at the
end, and writes them as JSON.

    python memray_workload.py BODIES_JSON RESULT_JSON SESSIONS [CAPTURE_DIR] [--idle S] [--kill]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

#: Sessions are replaced in the templates' name fields (bytes, like a watch stream's line).
NAME = b"__SESSION_NAME__"


def rss() -> dict[str, int]:
    """Resident bytes of this process by kind (/proc/self/status RssAnon, RssFile, RssShmem).

    Anonymous memory is the operator's heap; file-backed resident pages include memray's
    shared mmap window onto its capture file.
    """
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                key, value = line.split()[:2]
                out[key[3:-1].lower()] = int(value) * 1024
    return out


def capture_size(directory: str | None) -> tuple[int, int]:
    """(bytes written, bytes the file takes) of the capture in `directory`, (0, 0) if none.

    memray grows its file ahead of the data in 10% steps (posix_fallocate, zero-filled), so
    the size on disk moves in steps; what was written ends at the last non-zero byte.
    """
    if not directory:
        return 0, 0
    paths = [e.path for e in os.scandir(directory) if e.name.endswith(".bin")]
    if not paths:
        return 0, 0
    with open(max(paths, key=os.path.getsize), "rb") as f:
        size = pos = f.seek(0, os.SEEK_END)
        while pos > 0:
            step = min(pos, 1 << 16)
            f.seek(pos - step)
            block = f.read(step).rstrip(b"\0")
            if block:
                return pos - step + len(block), size
            pos -= step
    return 0, size


def decode(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(raw)
    return obj


def store(cache: dict[str, dict[str, Any]], obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    cache[f"{meta['namespace']}/{meta['name']}"] = obj


def handle_event(cache: dict[str, dict[str, Any]], raw: bytes) -> None:
    store(cache, decode(raw))


def watch_loop(
    cache: dict[str, dict[str, Any]], templates: list[list[bytes]], start: int, stop: int
) -> None:
    for i in range(start, stop):
        created, updated = templates[i % len(templates)]
        name = b"session-%07d" % i
        handle_event(cache, created.replace(NAME, name))
        handle_event(cache, updated.replace(NAME, name))


def checkpoint(capture_dir: str | None) -> dict[str, float]:
    written, size = capture_size(capture_dir)
    return {**rss(), "t": time.perf_counter(), "capture": written, "capture_file": size}


def main(argv: list[str]) -> int:
    idle = 0.0
    kill = "--kill" in argv
    argv = [a for a in argv if a != "--kill"]
    if "--idle" in argv:
        at = argv.index("--idle")
        idle = float(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    bodies, result, sessions = argv[0], argv[1], int(argv[2])
    capture_dir = argv[3] if len(argv) > 3 else None
    start = checkpoint(capture_dir)  # before anything of the workload's own
    with open(bodies, "rb") as f:
        templates = [[b.encode() for b in pair] for pair in json.load(f)]
    cache: dict[str, dict[str, Any]] = {}
    half = sessions // 2
    loop0 = checkpoint(capture_dir)
    watch_loop(cache, templates, 0, half)
    mid = checkpoint(capture_dir)
    watch_loop(cache, templates, half, sessions)
    end = checkpoint(capture_dir)
    idle_end = end
    if idle:
        time.sleep(idle)
        idle_end = checkpoint(capture_dir)
    doc = {
        "sessions": sessions,
        "cached": len(cache),
        "start": start,
        "loop_start": loop0,
        "mid": mid,
        "end": end,
        "idle_s": idle,
        "idle_end": idle_end,
    }
    with open(result, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    if kill:
        # The way an OOM-killed operator ends: its capture stops at the last record, with
        # the cache still live in it.
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
