"""triage.rundir.format: records declared once, coded the same both ways, documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from triage.rundir.format import (
    LATENCY_COLUMNS,
    SAMPLE_COLUMNS,
    V1_SAMPLE_COLUMNS,
    CellError,
    HeapProfile,
    JsonShapeError,
    Memory,
    PodState,
    Sample,
    build,
    cell,
    flatten,
    from_json,
    parse_cell,
    record_json,
)

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "architecture.md"


def test_the_documented_columns_are_the_declared_ones() -> None:
    text = DOCS.read_text()
    section = text[text.index("`samples.csv` columns:") : text.index("Version 1 runs")]
    assert re.findall(r"`([a-z_]+)`", section) == list(SAMPLE_COLUMNS)
    assert set(V1_SAMPLE_COLUMNS) <= set(SAMPLE_COLUMNS)
    assert LATENCY_COLUMNS[:2] == ("session", "namespace")


def test_a_sample_round_trips_through_its_cells() -> None:
    sample = Sample(
        kind="batch", batch=3, t_seconds=12.5, timestamp="t", sessions=100, namespaces=10,
        objects=110, memory=Memory(unreclaimable_bytes=123, working_set_bytes=None,
                                   memory_source="memory.stat v1"),
        state=PodState(pod="p", oom_killed=True), batch_seconds=1.25,
    )  # fmt: skip
    row = {k: cell(v) for k, v in flatten(sample).items()}
    assert (
        row["oom_killed"] == "1" and row["working_set_bytes"] == "" and row["t_seconds"] == "12.500"
    )
    assert build(Sample, row) == sample


def test_cells_are_checked_against_their_declared_types() -> None:
    assert parse_cell("x", int | None, "") is None
    assert parse_cell("x", int, "7.0") == 7
    assert parse_cell("x", float | None, "nan") is None
    for tp, text, expected in ((int, "7.5", "an integer"), (int, "", "an integer"),
                               (bool, "2", "0 or 1"), (float, "inf", "a finite number")):  # fmt: skip
        with pytest.raises(CellError, match=expected):
            parse_cell("x", tp, text)


def test_json_records_are_checked_and_unknown_keys_ignored() -> None:
    doc = {"heap_bytes": 1, "allocations": 2, "future_field": "kept out",
           "top": [{"function": "f", "file": "m.py", "line": 1, "bytes": 1, "count": 1,
                    "stack": [{"function": "g", "file": "m.py", "line": 2}]}]}  # fmt: skip
    profile = from_json(HeapProfile, doc)
    assert profile.top[0].stack[0].function == "g"
    assert record_json(profile)["top"][0]["stack"][0]["line"] == 2
    with pytest.raises(JsonShapeError, match=r"top\[0\]\.line"):
        from_json(HeapProfile, {**doc, "top": [{**doc["top"][0], "line": "one"}]})
