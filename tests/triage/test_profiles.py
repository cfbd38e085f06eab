"""memray captures become memray.json, even when the process that wrote them was killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from triage.profiles import parse_capture, parse_capture_isolated

pytestmark = [pytest.mark.unit]

_WORKLOAD = """
import json, sys, memray
# Not compressed on exit: like a capture whose process was killed before it could be.
dest = memray.FileDestination(sys.argv[1], compress_on_exit=False)
with memray.Tracker(destination=dest, follow_fork=False):
    keep = [json.dumps({"session": i, "payload": "x" * 200}) for i in range(20000)]
    tmp = [bytearray(4096) for _ in range(500)]
    del tmp
"""


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("memray") / "memray-test-1.bin"
    subprocess.run([sys.executable, "-c", _WORKLOAD, str(path)], check=True, timeout=120)
    return path


def _check_shape(doc: dict) -> None:
    assert isinstance(doc["heap_bytes"], int) and doc["heap_bytes"] > 0
    assert isinstance(doc["allocations"], int) and doc["allocations"] > 0
    assert doc["top"]
    for site in doc["top"]:
        assert set(site) >= {"function", "file", "line", "bytes", "count"}
        assert isinstance(site["line"], int) and site["bytes"] > 0
    sizes = [s["bytes"] for s in doc["top"]]
    assert sizes == sorted(sizes, reverse=True)


def test_parse_complete_capture(capture: Path) -> None:
    doc = parse_capture(capture)
    _check_shape(doc)
    # The kept strings are live at the end; the freed bytearrays are not.
    assert doc["heap_bytes"] < doc["peak_bytes"] or doc["heap_bytes"] <= doc["peak_bytes"]
    assert doc["heap_bytes"] > 20000 * 200
    json.dumps(doc)


def test_parse_truncated_capture_in_a_child_process(capture: Path, tmp_path: Path) -> None:
    # What SIGKILL leaves: a file cut at an arbitrary byte.
    data = capture.read_bytes()
    cut = tmp_path / "memray-cut-1.bin"
    cut.write_bytes(data[: len(data) * 2 // 3])
    doc = parse_capture_isolated(cut)
    _check_shape(doc)
    assert doc["source"] == cut.name
    full = parse_capture_isolated(capture)
    assert doc["heap_bytes"] <= full["peak_bytes"]


def test_garbage_is_an_error_not_a_crash(tmp_path: Path) -> None:
    from triage.profiles import ProfileError

    bad = tmp_path / "memray-bad-1.bin"
    bad.write_bytes(b"not a memray file at all")
    with pytest.raises(ProfileError, match="cannot parse memray capture"):
        parse_capture_isolated(bad)
