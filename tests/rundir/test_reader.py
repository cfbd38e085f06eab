"""triage.rundir.reader: the format is enforced with errors that name file, line and cell,
and every format version this triage wrote is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.conftest import SYNTHETIC
from tests.report.synthetic import write_run
from triage.errors import RunDirError
from triage.rundir import load_run

DATA_RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"

pytestmark = pytest.mark.unit


def _edit_csv(path: Path, line: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_loads_every_documented_file(oom_run: Path) -> None:
    run = load_run(oom_run)
    assert run.meta.scenario == "terminal-sessions"
    assert run.samples[0].kind == "baseline"
    assert run.latency is not None and len(run.latency) == 120
    assert run.heap and run.heap[0][0] == 0 and run.heap[1][1].top[0].stack
    assert run.pyspy and "MainThread" in next(iter(run.pyspy.values()))
    assert run.samples[1].memory.unreclaimable_bytes is not None


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no such directory"):
        load_run(tmp_path / "nope")


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"run\.json: missing: not a triage run directory"):
        load_run(tmp_path)


def test_missing_samples(oom_run: Path) -> None:
    (oom_run / "samples.csv").unlink()
    with pytest.raises(RunDirError, match=r"samples\.csv: missing"):
        load_run(oom_run)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=99), "unsupported schema 99"),
        (lambda d: d.pop("run_id"), "'run_id': missing"),
        (lambda d: d.update(limit_bytes="128Mi"), "'limit_bytes': expected int"),
        (lambda d: d.update(limit_bytes=-5), "'limit_bytes' must be positive"),
        (lambda d: d["outcome"].update(oom_batch="7"), "'outcome.oom_batch': expected int"),
        (lambda d: d.update(options=[]), "'options': expected an object"),
    ],
)
def test_invalid_run_json(oom_run: Path, mutate: object, message: str) -> None:
    path = oom_run / "run.json"
    data = json.loads(path.read_text())
    mutate(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(RunDirError, match=message) as info:
        load_run(oom_run)
    assert str(info.value).startswith(str(path))


def test_run_json_not_json(oom_run: Path) -> None:
    (oom_run / "run.json").write_text("{nope")
    with pytest.raises(RunDirError, match=r"run\.json: not valid JSON"):
        load_run(oom_run)


def test_samples_missing_column(oom_run: Path) -> None:
    path = oom_run / "samples.csv"
    path.write_text(path.read_text().replace("rss_bytes,", "", 1))
    with pytest.raises(RunDirError, match=r"samples\.csv: missing column\(s\): rss_bytes"):
        load_run(oom_run)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("working_set_bytes", "lots", "a number"),
        ("sessions", "12.5", "an integer"),
        ("kind", "warmup", "one of baseline, batch, post-oom, cold-start"),
        ("oom_killed", "2", "0 or 1"),
        ("batch", "", "an integer"),
    ],
)
def test_samples_bad_cell_names_line_and_column(
    oom_run: Path, column: str, value: str, expected: str
) -> None:
    _edit_csv(oom_run / "samples.csv", 3, column, value)
    with pytest.raises(RunDirError, match=f"line 3, column '{column}': expected {expected}"):
        load_run(oom_run)


def test_empty_memory_cells_are_missing_readings_not_errors(oom_run: Path) -> None:
    _edit_csv(oom_run / "samples.csv", 3, "working_set_bytes", "")
    _edit_csv(oom_run / "samples.csv", 3, "batch", "1.0")  # float-written ints are fine
    run = load_run(oom_run)
    assert run.samples[1].memory.working_set_bytes is None and run.samples[1].batch == 1


def test_extra_cells_rejected(oom_run: Path) -> None:
    path = oom_run / "samples.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",surprise"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match="line 3: more cells than header columns"):
        load_run(oom_run)


def test_latency_bad_timestamp(oom_run: Path) -> None:
    _edit_csv(oom_run / "latency.csv", 2, "running", "soon")
    with pytest.raises(RunDirError, match=r"latency\.csv: line 2, column 'running'"):
        load_run(oom_run)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[]", "expected a JSON object"),
        ('{"heap_bytes": "1", "allocations": 1, "top": []}', "'heap_bytes': expected int"),
        ('{"heap_bytes": 1, "allocations": 1, "top": {}}', "'top': expected a list"),
        (
            '{"heap_bytes": 1, "allocations": 1, "top": [{"function": "f", "file": "x", '
            '"line": 1, "bytes": true, "count": 1}]}',
            r"'top\[0\]\.bytes': expected int, got True",
        ),
    ],
)
def test_memray_json_shape(oom_run: Path, payload: str, message: str) -> None:
    target = oom_run / "profiles" / "batch-0002" / "memray.json"
    target.write_text(payload)
    with pytest.raises(RunDirError, match=message) as info:
        load_run(oom_run)
    assert "batch-0002/memray.json" in str(info.value)


def test_optional_files_absent(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, SYNTHETIC["survived-bare"]))
    assert run.latency is None and run.heap == () and not run.pyspy and run.events == ()


def test_a_run_in_the_first_format_is_still_read() -> None:
    """Runs written before the format carried the memory breakdown stay readable: the
    columns they lack are unknown (None), never zero."""
    run = load_run(DATA_RUNS / "oom-full-cache-128mi")
    assert run.meta.schema == 1
    batch = run.samples[1]
    assert batch.memory.rss_bytes is not None and batch.memory.unreclaimable_bytes is None
    assert batch.memory.cache_bytes is None and batch.state.pod
    assert run.heap and run.heap[0][1].top[0].stack == ()


def test_a_cut_off_events_file_keeps_what_came_before(oom_run: Path) -> None:
    path = oom_run / "events.jsonl"
    path.write_text(
        '{"kind": "pod-replaced", "t_seconds": 1.0, "timestamp": "t", "message": "m", '
        '"data": {}}\n{"kind": "trunc'
    )
    assert [e.kind for e in load_run(oom_run).events] == ["pod-replaced"]
