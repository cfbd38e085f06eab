"""Reading a memray capture with and without the zeros memray pads it with, side by side.

memray grows a capture ahead of its data (posix_fallocate, in steps of a tenth of the file)
and fills it as it goes, so every capture ends in zeros: up to a tenth of the file, whether
the process was killed or exited. memray's reader skips them by stepping back one byte at a
time, a seek and an 8 KiB buffer refill per byte, every time it opens the file.
`triage.memray_capture.trim_zero_tail` cuts them where the reader would stop, once, when the
capture is copied out of the pod. This measures what that saves on the read a run makes
(`triage.memray_timeline`, one child process per capture): wall and CPU time (user and
kernel) of the same capture padded and cut, alternating, and the medians.

The capture is made here: bench/memray_workload.py decodes `--sessions` production-shaped
sessions under triage's launcher with Python allocators traced (the run's default), killed
at the end as an OOM kill would. Or `--capture PATH` reads a capture a run copied out
(before this change, a run's profiles/raw/ held them padded). `--pad-fraction` pads the
capture to that share of zeros first (0: as memray left it); memray's worst case is 0.1.

    .venv/bin/python bench/memray_read.py [--sessions 20000] [--repeats 3] [--pad-fraction 0]

Writes bench/results/memray_read.json.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _cluster import bench_parser, write_result  # noqa: E402
from memray_modes import LAUNCHER, WORKLOAD, templates  # noqa: E402

from triage.memray_capture import readable_size, trim_zero_tail  # noqa: E402
from triage.memray_timeline import profiles_isolated  # noqa: E402

RESULTS = REPO / "bench" / "results" / "memray_read.json"
MB = 1e6


def make_capture(work: Path, sessions: int) -> Path:
    bodies, result, cap = work / "bodies.json", work / "result.json", work / "cap"
    bodies.write_text(json.dumps(templates(200)))
    cap.mkdir()
    py = sys.executable
    subprocess.run(
        [py, str(LAUNCHER), "--output-dir", str(cap), "--trace-python-allocators", "--",
         str(WORKLOAD), "--kill", str(bodies), str(result), str(sessions), str(cap)],
        check=False, capture_output=True, timeout=1800,
    )  # fmt: skip
    found = sorted(cap.glob("*.bin"), key=lambda p: p.stat().st_size)
    if not found:
        raise SystemExit(f"the workload left no capture in {cap}")
    return found[-1]


def timed_read(path: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    doc = profiles_isolated(path, [])
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "heap_bytes_at_end": float(doc["end"]["heap_bytes"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out=RESULTS, repeats=3)
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--capture", type=Path, default=None)
    parser.add_argument("--pad-fraction", type=float, default=0.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memray-read-") as tmp:
        work = Path(tmp)
        source = args.capture or make_capture(work, args.sessions)
        padded, cut = work / "padded.bin", work / "cut.bin"
        shutil.copyfile(source, padded)
        records = readable_size(padded)
        own_zeros = padded.stat().st_size - records
        if args.pad_fraction > 0:
            target = int(records / (1 - args.pad_fraction))
            with padded.open("ab") as f:
                f.truncate(max(target, padded.stat().st_size))
        zeros = padded.stat().st_size - records
        shutil.copyfile(padded, cut)
        assert trim_zero_tail(cut) == zeros
        rows: dict[str, list[dict[str, float]]] = {"padded": [], "cut": []}
        for i in range(args.repeats):
            order = ("padded", "cut") if i % 2 == 0 else ("cut", "padded")
            for name in order:
                rows[name].append(timed_read(padded if name == "padded" else cut))
                r = rows[name][-1]
                print(f"repeat {i + 1} {name:6}: {r['wall_s']:.1f} s wall, "
                      f"{r['user_s']:.1f} s user, {r['sys_s']:.1f} s kernel", flush=True)  # fmt: skip
    same = {r["heap_bytes_at_end"] for rs in rows.values() for r in rs}
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "user_s", "sys_s")}
        for name, rs in rows.items()
    }
    print(f"capture: {records / MB:.0f} MB of records, {zeros / MB:.1f} MB of zeros "
          f"({own_zeros / MB:.1f} MB as memray left it)")  # fmt: skip
    for name in ("padded", "cut"):
        m = med[name]
        print(f"{name:6} (median of {args.repeats}): {m['wall_s']:.1f} s wall, "
              f"{m['user_s']:.1f} s user, {m['sys_s']:.1f} s kernel")  # fmt: skip
    print(f"same heap read from both: {len(same) == 1}")
    data: dict[str, Any] = {
        "capture": {
            "source": str(args.capture) if args.capture else f"workload, {args.sessions} sessions",
            "record_bytes": records, "zero_bytes": zeros, "zero_bytes_as_left": own_zeros,
            "pad_fraction": args.pad_fraction,
        },
        "runs": rows, "median": med, "same_heap": len(same) == 1,
    }  # fmt: skip
    write_result(args.out, data, cluster=None)
    print(f"wrote {args.out}")
    return 0 if len(same) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
