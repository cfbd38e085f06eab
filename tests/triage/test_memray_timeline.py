"""triage.memray_timeline: the heap at chosen moments, from one pass over one capture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triage.memray_capture import LZ4_MAGIC, CaptureError, trim_zero_tail
from triage.memray_timeline import profiles_isolated

pytestmark = pytest.mark.unit

_WORKLOAD = """
import json, sys, time, memray
keep, marks = [], []

def decode(i):
    return json.loads('{"a": [1, 2, 3], "b": "%s"}' % ("x" * 40 + str(i)))

def watch_loop(n):
    for i in range(n):
        keep.append(decode(i))

# "raw": uncompressed, as triage's launcher writes (memray compresses at exit by default).
dest = memray.FileDestination(sys.argv[1], compress_on_exit=sys.argv[2:] != ["raw"])
with memray.Tracker(destination=dest, trace_python_allocators=True, memory_interval_ms=10):
    for phase in range(3):
        watch_loop(20000)
        time.sleep(0.3)
        marks.append(time.time())
        if phase == 1:
            del keep[:30000]   # the heap shrinks between the second and third moment
print(json.dumps(marks))
"""


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    where = tmp_path_factory.mktemp("timeline")
    path, script = where / "memray-1.bin", where / "workload.py"
    script.write_text(_WORKLOAD)  # a file of its own: its frames are the program's, not <string>
    out = subprocess.run([sys.executable, str(script), str(path)], check=True,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    return path, json.loads(out.stdout)


def test_heap_at_each_moment_follows_the_program(capture: tuple[Path, list[float]]) -> None:
    path, marks = capture
    before = marks[0] - 100  # before the capture began: no heap to show
    t = profiles_isolated(path, [before] + [m * 1000 for m in marks])
    at = t["at"]
    assert at[0] is None
    heaps = [p["heap_bytes"] for p in at[1:]]
    # 20k objects, 40k, then 60k minus 30k.
    assert heaps[0] < heaps[1] and heaps[2] < heaps[1]
    assert heaps[1] == pytest.approx(2 * heaps[0], rel=0.1)
    assert heaps[2] == pytest.approx(1.5 * heaps[0], rel=0.15)
    top = at[2]["top"][0]
    # The site is the workload's own frame, with the path that led to the allocation.
    names = [f["function"] for f in top["stack"]]
    assert top["function"] == "decode" and "watch_loop" in names
    assert at[2]["python_allocators"] is True
    assert t["end"]["heap_bytes"] == pytest.approx(heaps[2], rel=0.05)


def test_a_broken_capture_is_an_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "memray-bad.bin"
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(CaptureError, match=r"memray-bad\.bin"):
        profiles_isolated(bad, [1.0])


def test_a_niced_read_gives_the_same_heaps_at_low_priority(
    capture: tuple[Path, list[float]],
) -> None:
    # Beside a cold start the read runs niced: only its priority changes, not what it reads.
    path, marks = capture
    times = [m * 1000 for m in marks]
    plain, niced = profiles_isolated(path, times), profiles_isolated(path, times, nice=19)
    assert [p["heap_bytes"] for p in niced["at"]] == [p["heap_bytes"] for p in plain["at"]]
    # The child says the priority it read at: the one it inherited, or the lowest.
    assert plain["nice"] == os.nice(0) and niced["nice"] == 19


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority takes root")
def test_a_niced_read_raised_while_it_runs_stays_raised(
    capture: tuple[Path, list[float]],
) -> None:
    # When the cold start ends its niced read gets full priority back. The parent lowers
    # the child's priority before anyone can raise it; a child that lowered its own as it
    # started would undo a raise that came first, and the read would crawl on at 19.
    path, marks = capture
    own = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []

    def raise_at_once(pid: int) -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, pid))
        os.setpriority(os.PRIO_PROCESS, pid, own)

    t = profiles_isolated(path, [m * 1000 for m in marks], nice=19, started=raise_at_once)
    assert seen == [19] and t["nice"] == own


def test_a_capture_read_beside_a_cold_start_keeps_only_its_own_batches(
    capture: tuple[Path, list[float]], tmp_path: Path
) -> None:
    """`--restart-at`: the first process's capture is read at the restart (niced), when only
    the marks so far exist; later batches come from the restarted process's capture. Each
    batch gets its heap from the capture it happened in."""
    from triage.profiling import Settings
    from triage.profiling.memray import MemrayProfiler
    from triage.rundir import RunWriter
    from triage.target import Target

    first, marks_a = capture
    second = tmp_path / "memray-2.bin"
    out = subprocess.run([sys.executable, str(first.parent / "workload.py"), str(second)],
                         check=True, capture_output=True, text=True, timeout=180)  # fmt: skip
    marks_b = json.loads(out.stdout)
    run = RunWriter(tmp_path / "run", run_id="20261203T000000Z-abcdef")
    profiler = MemrayProfiler(
        None,  # type: ignore[arg-type]  # nothing here talks to the cluster
        run=run, target=Target("ns", "op", "op"), settings=Settings(kind="memray"),
    )  # fmt: skip
    try:
        # Batches 0 and 1 ran in the first process; then the cold start restarted it.
        profiler._marks += [(0, marks_a[0], False), (1, marks_a[1], False)]
        profiler._copied["memray-1.bin"] = first
        profiler.read_ended()
        # Batches 2 and 3 in the restarted process, read after the last measurement.
        profiler._marks += [(2, marks_b[0], False), (3, marks_b[1], False)]
        profiler._copied["memray-2.bin"] = second
        profiler.start_reading()
        profiler.finish()
    finally:
        profiler.close()
    sources = {
        b: json.loads((tmp_path / "run" / "profiles" / f"batch-{b:04d}" / "memray.json")
                      .read_text())["source"]
        for b in range(4)
    }  # fmt: skip
    assert sources == {0: "memray-1.bin", 1: "memray-1.bin", 2: "memray-2.bin", 3: "memray-2.bin"}
    assert not profiler.notes, profiler.notes
    if os.geteuid() == 0:
        # The read begun niced beside the cold start ended at full priority: the cold start's
        # measurement was over, and nothing else is waited for but the reads.
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert profiler._timelines["memray-1.bin"]["nice"] == own  # type: ignore[index]


def test_collect_does_not_wait_for_a_read_of_what_was_already_copied(tmp_path: Path) -> None:
    """The restore follows collect(): a minute-long parse of a capture copied before the cold
    start must not hold it up (it did: collect() drained every background job)."""
    import threading

    from triage.profiling import Profiler, Settings
    from triage.rundir import RunWriter
    from triage.target import Target

    run = RunWriter(tmp_path / "run", run_id="20261204T000000Z-abcdef")
    profiler = Profiler(
        None,  # type: ignore[arg-type]  # nothing here talks to the cluster
        run=run, target=Target("ns", "op", "op"), settings=Settings(kind="memray"),
    )  # fmt: skip
    release, copied, parsed = threading.Event(), threading.Event(), threading.Event()

    def parse() -> None:
        release.wait(30)
        parsed.set()

    try:
        profiler._submit("read", parse, read=True)
        profiler._submit("copy", copied.set)  # pod-bound work is still waited for
        done = threading.Thread(target=profiler.collect)
        done.start()
        done.join(10)
        assert not done.is_alive() and copied.is_set() and not parsed.is_set()
        release.set()
        profiler.finish()  # the end of the run waits for the read
        assert parsed.is_set()
    finally:
        release.set()
        profiler.close()


def test_the_zeros_memray_pads_a_capture_with_are_cut_and_nothing_else(
    capture: tuple[Path, list[float]], tmp_path: Path
) -> None:
    """memray's reader steps back over a capture's zero padding one byte at a time, on every
    open; the copy is cut where the reader would stop, and reads exactly as before."""
    path, _ = capture
    padded = tmp_path / "memray-padded.bin"
    out = subprocess.run([sys.executable, str(path.parent / "workload.py"), str(padded), "raw"],
                         check=True, capture_output=True, text=True, timeout=180)  # fmt: skip
    times = [m * 1000 for m in json.loads(out.stdout)]
    original = padded.read_bytes()
    assert original[:4] != LZ4_MAGIC
    records = len(original.rstrip(b"\0"))
    with padded.open("ab") as f:
        f.write(bytes(3 << 20))  # more padding, as a capture cut off early in a chunk has
    before = profiles_isolated(padded, times)
    assert trim_zero_tail(padded, chunk=1 << 16) == len(original) + (3 << 20) - records
    assert padded.stat().st_size == records and padded.read_bytes() == original[:records]
    assert trim_zero_tail(padded) == 0  # nothing left to cut
    after = profiles_isolated(padded, times)
    assert [p["heap_bytes"] for p in after["at"]] == [p["heap_bytes"] for p in before["at"]]
    assert after["end"]["heap_bytes"] == before["end"]["heap_bytes"]
    assert after["last_ms"] == before["last_ms"] and not after["truncated"]
    # A compressed capture ends in lz4's zero end mark, which is data: left alone.
    lz4 = tmp_path / "memray-compressed.bin"
    lz4.write_bytes(LZ4_MAGIC + b"frame" + bytes(8))
    assert trim_zero_tail(lz4) == 0 and lz4.stat().st_size == 4 + 5 + 8
