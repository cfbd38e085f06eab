"""Prometheus text exposition, the metrics/probe listeners and the loopback-only debug server."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import memray
import pytest

from agentic_operator._httpserve import parse_addr, serve_metrics, serve_probes
from agentic_operator._metrics import Registry, register_process_metrics
from agentic_operator._profiling import (
    DebugAddressError,
    ProfilingError,
    memray_capture_path,
    start_debug_server_if_enabled,
    start_memray_if_enabled,
)

pytestmark = pytest.mark.unit

# One sample line of text format 0.0.4: name{labels} value
_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\\\|\\"|\\n)*",?)*\})? '
    r"(NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$"
)


def _check_format(text: str) -> None:
    assert text.endswith("\n")
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in typed, f"duplicate TYPE for {name}"
            typed.add(name)
            continue
        assert _SAMPLE.match(line), f"bad sample line: {line!r}"


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_counter_gauge_histogram_render() -> None:
    reg = Registry()
    c = reg.counter("ambient_sessions_total", "Sessions seen.\nSecond line \\ slash")
    c.inc()
    c.inc(2)
    lc = reg.counter("ambient_session_errors_total", "Errors.", ("phase", "error_type"))
    lc.labels("Creating", 'say "hi"\n').inc()
    lc.labels(phase="Running", error_type="x").inc(5)
    g = reg.gauge("queue_depth", "Depth.")
    g.set(7)
    g.dec(2)
    h = reg.histogram("dur_seconds", "Duration.", ("phase",), buckets=(0.1, 1, 10))
    h.labels("Pending").observe(0.05)
    h.labels("Pending").observe(0.5)
    h.labels("Pending").observe(50)
    text = reg.render().decode()
    _check_format(text)
    assert "# HELP ambient_sessions_total Sessions seen.\\nSecond line \\\\ slash" in text
    assert "# TYPE ambient_sessions_total counter" in text
    assert "ambient_sessions_total 3" in text
    assert 'ambient_session_errors_total{phase="Creating",error_type="say \\"hi\\"\\n"} 1' in text
    assert 'ambient_session_errors_total{phase="Running",error_type="x"} 5' in text
    assert "queue_depth 5" in text
    assert 'dur_seconds_bucket{phase="Pending",le="0.1"} 1' in text
    assert 'dur_seconds_bucket{phase="Pending",le="1.0"} 2' in text
    assert 'dur_seconds_bucket{phase="Pending",le="10.0"} 2' in text
    assert 'dur_seconds_bucket{phase="Pending",le="+Inf"} 3' in text
    assert 'dur_seconds_sum{phase="Pending"} 50.55' in text
    assert 'dur_seconds_count{phase="Pending"} 3' in text


def test_unlabelled_histogram_renders_zero_series() -> None:
    reg = Registry()
    reg.histogram("empty_seconds", "Nothing yet.")
    text = reg.render().decode()
    _check_format(text)
    assert 'empty_seconds_bucket{le="+Inf"} 0' in text
    assert "empty_seconds_count 0" in text


def test_gauge_callbacks_evaluated_at_scrape() -> None:
    reg = Registry()
    size = {"n": 1}
    reg.gauge("cache_objects", "Objects.", callback=lambda: size["n"])
    reg.gauge(
        "cache_objects_by_kind",
        "Objects by kind.",
        ("kind",),
        callback=lambda: [(("sessions",), 10), (("pods",), 2)],
    )
    assert "cache_objects 1" in reg.render().decode()
    size["n"] = 42
    text = reg.render().decode()
    _check_format(text)
    assert "cache_objects 42" in text
    assert 'cache_objects_by_kind{kind="pods"} 2' in text
    assert 'cache_objects_by_kind{kind="sessions"} 10' in text


def test_broken_callback_does_not_break_scrape() -> None:
    reg = Registry()
    reg.gauge("bad", "Bad.", callback=lambda: 1 / 0)
    reg.counter("good_total", "Good.").inc()
    text = reg.render().decode()
    assert "good_total 1" in text
    assert "\nbad " not in text
    assert "# bad unavailable: ZeroDivisionError" in text


def test_same_name_same_family_and_type_conflicts() -> None:
    reg = Registry()
    a = reg.counter("x_total", "X.", ("a",))
    assert reg.counter("x_total", "X.", ("a",)) is a
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("x_total", "X.")
    with pytest.raises(ValueError):
        a.labels("1", "2")
    with pytest.raises(ValueError):
        a.labels("1").inc(-1)


def test_special_values_and_remove() -> None:
    reg = Registry()
    g = reg.gauge("g", "G.", ("k",))
    g.labels("nan").set(math.nan)
    g.labels("inf").set(math.inf)
    g.labels("gone").set(1)
    g.remove("gone")
    text = reg.render().decode()
    _check_format(text)
    assert 'g{k="nan"} NaN' in text
    assert 'g{k="inf"} +Inf' in text
    assert "gone" not in text


def test_concurrent_increments_are_not_lost() -> None:
    reg = Registry()
    c = reg.counter("n_total", "N.", ("w",)).labels("x")

    def work() -> None:
        for _ in range(10_000):
            c.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.get() == 40_000


def test_process_metrics() -> None:
    reg = Registry()
    register_process_metrics(reg)
    text = reg.render().decode()
    _check_format(text)
    rss = float(re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert 1 << 20 < rss < 4 << 30
    start = float(re.search(r"^process_start_time_seconds (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert time.time() - 3600 < start <= time.time() + 1


def test_parse_addr() -> None:
    assert parse_addr(":8080") == ("", 8080)
    assert parse_addr("127.0.0.1:9") == ("127.0.0.1", 9)
    assert parse_addr("[::1]:6060") == ("::1", 6060)
    assert parse_addr("0") is None
    assert parse_addr("") is None
    for bad in ("8080", "host:x", ":70000"):
        with pytest.raises(ValueError):
            parse_addr(bad)


def test_metrics_server() -> None:
    reg = Registry()
    reg.counter("hits_total", "Hits.").inc()
    srv = serve_metrics("127.0.0.1:0", reg)
    assert srv is not None
    try:
        status, ctype, body = _get(f"http://127.0.0.1:{srv.port}/metrics")
        assert status == 200
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert b"hits_total 1" in body
        assert _get(f"http://127.0.0.1:{srv.port}/nope")[0] == 404
    finally:
        srv.shutdown()
    assert serve_metrics("0", reg) is None


def test_probe_server() -> None:
    state = {"ready": False}

    def boom() -> bool:
        raise RuntimeError("x")

    srv = serve_probes("127.0.0.1:0", healthz=lambda: True, readyz=lambda: state["ready"])
    assert srv is not None
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert _get(base + "/healthz")[::2] == (200, b"ok")
        assert _get(base + "/readyz")[0] == 500
        state["ready"] = True
        assert _get(base + "/readyz")[::2] == (200, b"ok")
        assert _get(base + "/readyz/ping")[0] == 200
    finally:
        srv.shutdown()
    srv2 = serve_probes("127.0.0.1:0", healthz=boom, readyz=boom)
    assert srv2 is not None
    try:
        assert _get(f"http://127.0.0.1:{srv2.port}/healthz")[0] == 500
    finally:
        srv2.shutdown()


@pytest.mark.parametrize(
    "addr", ["0.0.0.0:6060", ":6060", "10.1.2.3:6060", "[::]:6060", "example.com:6060"]
)
def test_debug_server_refuses_non_loopback(addr: str) -> None:
    with pytest.raises(DebugAddressError, match="loopback"):
        start_debug_server_if_enabled({"AGENTIC_DEBUG_ADDR": addr})


def test_debug_server_disabled_by_default() -> None:
    assert start_debug_server_if_enabled({}) is None


def test_debug_server_endpoints() -> None:
    srv = start_debug_server_if_enabled({"AGENTIC_DEBUG_ADDR": "127.0.0.1:0"})
    assert srv is not None
    try:
        assert srv.address[0] == "127.0.0.1"
        base = f"http://127.0.0.1:{srv.port}"
        status, _, body = _get(base + "/debug/gc?top=5")
        assert status == 200
        assert b"tracked objects=" in body
        status, ctype, body = _get(base + "/debug/gc?format=json&top=3")
        doc = json.loads(body)
        assert ctype == "application/json"
        assert len(doc["top_types"]) == 3
        assert doc["tracked_objects"] > 1000
        status, _, body = _get(base + "/debug/tracemalloc?format=json")
        assert status == 200
        first = json.loads(body)
        assert first["started_now"] is True
        _keep = [bytearray(1000) for _ in range(200)]
        second = json.loads(_get(base + "/debug/tracemalloc?format=json&top=5")[2])
        assert second["started_now"] is False
        assert second["traced_bytes"] > 100_000
        assert len(second["top"]) <= 5
        assert {"file", "line", "bytes", "count"} <= set(second["top"][0])
        assert _get(base + "/debug/tracemalloc?stop=1")[0] == 200
        del _keep
    finally:
        srv.shutdown()


def test_memray_capture_name() -> None:
    p = memray_capture_path("/profiles", now=0)
    assert p.name == f"memray-19700101T000000Z-{os.getpid()}.bin"


def test_memray_disabled_does_not_import_memray() -> None:
    code = (
        "import sys\n"
        "from agentic_operator._profiling import start_memray_if_enabled\n"
        "assert start_memray_if_enabled({}) is None\n"
        "assert 'memray' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_memray_capture_written(tmp_path: Path) -> None:
    # In a child process: a tracker is process-global state.
    code = (
        "import os\n"
        "from agentic_operator._profiling import start_memray_if_enabled, stop_memray\n"
        "t = start_memray_if_enabled({'AGENTIC_PROFILE': 'memray', 'AGENTIC_PROFILE_DIR': os.environ['D']})\n"
        "x = [bytes(1024) for _ in range(1000)]\n"
        "stop_memray(t)\n"
    )
    d = tmp_path / "profiles"
    subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, "D": str(d)}
    )
    files = list(d.glob("memray-*-*.bin"))
    assert len(files) == 1
    assert files[0].stat().st_size > 0
    reader = memray.FileReader(str(files[0]))
    assert reader.metadata.file_format == memray.FileFormat.ALL_ALLOCATIONS
    assert reader.metadata.has_native_traces is False


def test_memray_rejects_unknown_mode() -> None:
    with pytest.raises(ProfilingError):
        start_memray_if_enabled({"AGENTIC_PROFILE": "pyspy"})
