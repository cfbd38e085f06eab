"""Profiling hooks (`_profiling`): the loopback-only debug server and memray captures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import memray
import pytest

from agentic_operator._profiling import (
    DebugAddressError,
    ProfilingError,
    memray_capture_path,
    start_debug_server_if_enabled,
    start_memray_if_enabled,
)
from tests.operator_runtime.conftest import http_get

pytestmark = pytest.mark.unit


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
        status, _, body = http_get(base + "/debug/gc?top=5")
        assert status == 200
        assert b"tracked objects=" in body
        status, ctype, body = http_get(base + "/debug/gc?format=json&top=3")
        doc = json.loads(body)
        assert ctype == "application/json"
        assert len(doc["top_types"]) == 3
        assert doc["tracked_objects"] > 1000
        status, _, body = http_get(base + "/debug/tracemalloc?format=json")
        assert status == 200
        first = json.loads(body)
        assert first["started_now"] is True
        _keep = [bytearray(1000) for _ in range(200)]
        second = json.loads(http_get(base + "/debug/tracemalloc?format=json&top=5")[2])
        assert second["started_now"] is False
        assert second["traced_bytes"] > 100_000
        assert len(second["top"]) <= 5
        assert {"file", "line", "bytes", "count"} <= set(second["top"][0])
        assert http_get(base + "/debug/tracemalloc?stop=1")[0] == 200
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
