"""Captures become summaries whose sites carry the stack from the program's code down to the
allocation, also when the process that wrote them was killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.triage.launcher import until_ready
from triage.memray_capture import (
    CaptureError,
    frame_kind,
    parse_capture,
    parse_capture_isolated,
    run_isolated,
    short_stack,
)
from triage.memray_cost import CaptureBudget, estimate_fixed_cost

pytestmark = [pytest.mark.unit]

#: An informer-like program with a known call chain: watch_loop -> decode -> json.loads, and
#: many small objects made at one line (small_objects). It says "ready" once its cache is
#: full, then keeps working until it is killed.
WORKLOAD = """
import json, sys, time
RAW = json.dumps({"metadata": {"name": "s", "labels": {"a": "b"}},
                  "spec": {"items": [{"k": i, "v": str(i)} for i in range(20)]}})
cache = {}
small = []

def decode(raw):
    return json.loads(raw)

def small_objects(n):
    for i in range(n):
        small.append((i, i + 1))

def watch_loop(n):
    for i in range(n):
        cache[i] = decode(RAW)

watch_loop(int(sys.argv[1]))
small_objects(int(sys.argv[2]))
print("ready", flush=True)
while True:
    decode(RAW)
    time.sleep(0.001)
"""

SESSIONS, SMALL = 3000, 50000


def killed_capture(tmp: Path, *opts: str) -> Path:
    """A capture of WORKLOAD under the launcher, cut off by SIGKILL as an OOM kill would."""
    script = tmp / "informer.py"
    script.write_text(WORKLOAD)
    out = tmp / "out"
    with until_ready(out, str(script), str(SESSIONS), str(SMALL), opts=opts) as proc:
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    [cap] = out.glob("memray-*.bin")
    return cap


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cap = killed_capture(tmp_path_factory.mktemp("tpa"), "--trace-python-allocators")
    return parse_capture_isolated(cap)


@pytest.fixture(scope="module")
def arenas(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cap = killed_capture(tmp_path_factory.mktemp("arenas"), "--no-trace-python-allocators")
    return parse_capture_isolated(cap)


def _site(doc: dict, function: str) -> dict:
    return next(s for s in doc["top"] if s["function"] == function and s["kind"] == "own")


def test_killed_capture_parses_with_heap_and_sites(traced: dict) -> None:
    assert traced["truncated"] is True and traced["finished"] is False
    assert traced["heap_bytes"] > 0 and traced["allocations"] > 0
    assert traced["top"] and traced["peak_bytes"] >= traced["heap_bytes"]
    assert traced["trace_python_allocators"] is True and traced["grouping"] == "objects"
    assert traced["rss_bytes"] and traced["rss_bytes"] > traced["heap_bytes"] / 2
    # Today's memray.json fields are all there, with the same types.
    for site in traced["top"]:
        assert {"function", "file", "line", "bytes", "count", "stack"} <= set(site)
        assert isinstance(site["line"], int) and site["bytes"] > 0
    sizes = [s["bytes"] for s in traced["top"]]
    assert sizes == sorted(sizes, reverse=True)
    json.dumps(traced)


def test_stack_runs_from_the_allocation_to_the_callers(traced: dict) -> None:
    site = _site(traced, "decode")
    assert site["file"].endswith("informer.py")
    names = [(f["function"], f["kind"]) for f in site["stack"]]
    # leaf -> root: json's frames, then the program's decode, then its watch loop above it.
    at = names.index(("decode", "own"))
    assert ("loads", "stdlib") in names[:at]
    assert names[at + 1] == ("watch_loop", "own")
    assert not any("memray_launch" in f["file"] or "runpy" in f["file"] for f in site["stack"])


def test_trace_python_allocators_names_small_objects(traced: dict, arenas: dict) -> None:
    site = _site(traced, "small_objects")
    assert site["count"] >= SMALL  # one allocation per tuple: objects, not arenas
    cache = _site(traced, "decode")
    assert cache["count"] >= SESSIONS * 20
    # Without it the same program's small objects are only arenas, grouped as such.
    assert arenas["grouping"] == "arenas"
    assert arenas["top"][0]["function"] == "<pymalloc arenas>"
    assert arenas["by_kind"]["arena"]["bytes"] > arenas["heap_bytes"] / 2
    # Only the list's own buffer (a few large reallocs) is still seen at that line.
    assert all(s["count"] < 100 for s in arenas["top"] if s["function"] == "small_objects")


def test_garbage_is_an_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "memray-bad-1.bin"
    bad.write_bytes(b"not a memray file at all")
    with pytest.raises(CaptureError, match="cannot read memray capture"):
        parse_capture_isolated(bad)


def test_in_process_parse_matches_isolated(tmp_path: Path) -> None:
    cap = killed_capture(tmp_path)
    doc = parse_capture(cap, top_n=5)
    assert len(doc["top"]) <= 5 and doc["sites"] >= len(doc["top"])
    assert doc["heap_bytes"] == parse_capture_isolated(cap)["heap_bytes"]


def test_frame_kinds() -> None:
    assert frame_kind("/usr/lib/python3.11/json/decoder.py") == "stdlib"
    assert frame_kind("<frozen importlib._bootstrap>") == "stdlib"
    assert frame_kind("/venv/lib/python3.11/site-packages/urllib3/response.py") == "library"
    assert frame_kind("/venv/lib/python3.11/site-packages/memray/_memray.pyx") == "profiler"
    assert frame_kind("/triage/memray_launch.py") == "profiler"
    assert frame_kind("/app/agentic_operator/informer.py") == "own"
    assert frame_kind("/opt/op/venv/bin/kopf") == "entry"
    assert frame_kind("/app/bin/run.py") == "own"


def test_a_framework_operator_is_blamed_on_the_framework_not_its_console_script() -> None:
    """kopf run: no frame of the user's own on the path, the console script at the root.
    The site is the innermost library frame (kopf's watch), not `venv/bin/kopf`."""
    lib = "/venv/lib/python3.11/site-packages/"
    frames = [
        ("raw_decode", "/usr/lib/python3.11/json/decoder.py", 353),
        ("loads", "/usr/lib/python3.11/json/__init__.py", 346),
        ("infinite_watch", f"{lib}kopf/_cogs/clients/watching.py", 80),
        ("main", f"{lib}click/core.py", 1078),
        ("<module>", "/venv/bin/kopf", 8),
    ]
    site, kind, stack = short_stack(frames, max_frames=8, callers=2)
    assert site == ("infinite_watch", f"{lib}kopf/_cogs/clients/watching.py", 80)
    assert kind == "library"
    assert [f["kind"] for f in stack] == ["stdlib", "stdlib", "library", "library", "entry"]


def test_short_stack_keeps_both_ends() -> None:
    lib = "/venv/lib/python3.11/site-packages/kube/"
    frames = [(f"f{i}", f"{lib}m{i}.py", i) for i in range(10)]
    frames += [
        ("reconcile", "/app/op.py", 1),
        ("watch", "/app/op.py", 2),
        ("main", "/app/op.py", 3),
    ]
    frames += [("_run_code", "<frozen runpy>", 1), ("main", "/triage/memray_launch.py", 9)]
    site, kind, stack = short_stack(frames, max_frames=6, callers=2)
    assert site == ("reconcile", "/app/op.py", 1) and kind == "own"
    assert len(stack) == 6
    assert stack[0]["function"] == "f0"
    assert stack[-3:] == [
        {"function": n, "file": "/app/op.py", "line": ln, "kind": "own"}
        for n, ln in (("reconcile", 1), ("watch", 2), ("main", 3))
    ]
    elided = [f for f in stack if f["kind"] == "elided"]
    assert elided and elided[0]["frames"] == 13 - 5
    # No program frame at all: the innermost library frame is the site.
    site, kind, _ = short_stack(frames[:3])
    assert site == ("f0", f"{lib}m0.py", 0) and kind == "library"


def test_fixed_cost_and_its_two_uses() -> None:
    mib = 1024 * 1024
    cost = estimate_fixed_cost([50 * mib, 51 * mib, 49 * mib], [55 * mib, 56 * mib, 55 * mib])
    assert cost.bytes == 5 * mib and cost.spread > 0
    assert cost.limit_for(128 * mib) == 133 * mib
    # 5 MiB at 20 KiB a session: the profiled run hit the limit 256 sessions early.
    assert cost.corrected_sessions(4000, slope_bytes=20 * 1024) == pytest.approx(4256)
    assert estimate_fixed_cost(10, 14).bytes == 4 and estimate_fixed_cost(10, 14).spread == 0


def test_capture_budget() -> None:
    budget = CaptureBudget(bytes_per_session=3000, start_bytes=200 * 1024, idle_bytes_per_s=1000)
    limit = budget.size_limit(10000, duration_s=3600, starts=2)
    expected = 64 * 2**20 + 2.0 * 2 * (200 * 1024 + 3000 * 10000 + 1000 * 3600)
    assert limit >= expected and limit % 2**20 == 0 and limit - expected < 2**20
    assert "B x sessions" in budget.formula()


def test_capture_stop_keeps_two_more_batches_clear_of_every_eviction() -> None:
    from triage.memray_cost import capture_stop

    gib = 2**30
    fits = dict(batch=3, used=300 * 2**20, step=100 * 2**20)
    # Unknown figures never stop a run.
    assert capture_stop(**fits, pod_allowance=None, node_available=None, node_reserve=None) is None
    # The pod's ephemeral-storage allowance: 300 + 2 x 100 MiB fits 500 MiB, not 499.
    assert capture_stop(**fits, pod_allowance=500 * 2**20, node_available=None,
                        node_reserve=None) is None  # fmt: skip
    why = capture_stop(**fits, pod_allowance=499 * 2**20, node_available=None, node_reserve=None)
    assert why is not None and "ephemeral-storage" in why and "batch 3" in why
    # The node: two more batches must leave the reserve free.
    assert capture_stop(**fits, pod_allowance=None, node_available=10 * gib,
                        node_reserve=9 * gib) is None  # fmt: skip
    why = capture_stop(**fits, pod_allowance=None, node_available=9 * gib + 150 * 2**20,
                       node_reserve=9 * gib)  # fmt: skip
    assert why is not None and "9.1 GiB free" in why and "the load stopped here" in why


def test_the_capture_volume_has_no_size_limit_and_the_keeper_adds_the_allowance(
    tmp_path: Path,
) -> None:
    """An emptyDir over its sizeLimit gets the pod evicted, captures and all (seen with kopf,
    whose captures grow ~100x faster than ours): no sizeLimit. A pod with ephemeral-storage
    limits counts the volume against their sum: the keeper adds the allowance to it."""
    from triage.profiling import Settings
    from triage.profiling.memray import CAPTURE_VOLUME, KEEPER, MemrayProfiler
    from triage.rundir import RunWriter
    from triage.target import Target

    def spec(limits: dict[str, str]) -> dict:
        container = {"name": "op", "image": "op:1", "resources": {"limits": limits}}
        return {"template": {"spec": {"containers": [container]}}}

    target = Target("ns", "op", "op", command=["kopf", "run", "op.py"], interpreter="python3")
    for limits, allowance in (({"memory": "128Mi"}, False),
                              ({"memory": "128Mi", "ephemeral-storage": "1Gi"}, True)):  # fmt: skip
        run = RunWriter(tmp_path / str(allowance), run_id="20261202T000000Z-abcdef")
        profiler = MemrayProfiler(
            None,  # type: ignore[arg-type]  # modify() never talks to the cluster
            run=run, target=target, settings=Settings(kind="memray"),
        )  # fmt: skip
        s = spec(limits)
        profiler.modify(s, planned_sessions=2000)
        pod = s["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == CAPTURE_VOLUME)
        assert volume == {"name": CAPTURE_VOLUME, "emptyDir": {}}
        keeper = next(c for c in pod["containers"] if c["name"] == KEEPER)
        got = keeper["resources"]["limits"].get("ephemeral-storage")
        assert (got is not None) is allowance, keeper["resources"]
        assert (profiler.info["capture_pod_allowance"] is not None) is allowance
        op = next(c for c in pod["containers"] if c["name"] == "op")
        assert op["resources"]["limits"] == limits  # the operator keeps its own
        assert op["command"][-3:] == ["kopf", "run", "op.py"]
        profiler.close()


def test_a_reader_is_killed_when_its_start_callback_fails(tmp_path: Path) -> None:
    """The child would otherwise be waited for with no limit by Popen's exit."""
    import sys

    pids: list[int] = []

    def started(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("callback failed")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="callback failed"):
        run_isolated(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            tmp_path / "capture.bin",
            what="nothing",
            timeout=120,
            started=started,
        )
    assert time.monotonic() - t0 < 20
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # reaped: killed and waited for
