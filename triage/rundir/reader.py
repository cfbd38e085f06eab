"""Load and validate a run directory into the records of `triage.rundir.format`.

The run directory is the only contract between the code that touches a cluster (reproduce)
and the code that explains what happened (report). Validating it here, strictly and with
errors that name the file, line and column, means a schema drift shows up as one readable
line instead of as a wrong number in a figure somebody approves in a PR. Every format
version this triage wrote is read: a column added since is "unknown" in older runs.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.errors import RunDirError
from triage.rundir.format import (
    LATENCY_COLUMNS,
    READABLE_VERSIONS,
    SAMPLE_COLUMNS,
    V1_LATENCY_COLUMNS,
    V1_SAMPLE_COLUMNS,
    CellError,
    Event,
    HeapProfile,
    JsonShapeError,
    LatencyRow,
    RunMeta,
    Sample,
    build,
    from_json,
)

_BATCH_DIR = re.compile(r"^batch-(\d+)$")
HEAP_PROFILERS = ("memray", "pprof")


@dataclass(frozen=True, slots=True)
class Run:
    """Everything a report needs, read from one run directory."""

    path: Path
    meta: RunMeta
    samples: tuple[Sample, ...]
    latency: tuple[LatencyRow, ...] | None = None
    #: (batch, heap profile) of the run's heap profiler (memray or pprof), by batch.
    heap: tuple[tuple[int, HeapProfile], ...] = ()
    pyspy: dict[int, str] = field(default_factory=dict)
    events: tuple[Event, ...] = ()


def resolve_run_dir(path: Path) -> Path:
    """A run directory, or a directory holding runs (then the newest one).

    `reproduce --out reports/demo` followed by `report reports/demo` should just work; run ids
    start with a UTC timestamp, so the newest run is the last name in sort order.
    """
    if path.is_dir() and not (path / "run.json").exists():
        runs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "run.json").is_file())
        if runs:
            return runs[-1]
    return path


def load_run(path: Path) -> Run:
    """Read and validate a run directory; raise RunDirError naming the offending file."""
    if not path.exists():
        raise RunDirError(path, "no such directory")
    if not path.is_dir():
        raise RunDirError(path, "not a directory")
    run_json, samples_csv = path / "run.json", path / "samples.csv"
    if not run_json.is_file():
        raise RunDirError(
            run_json, "missing: not a triage run directory (expected run.json and samples.csv)"
        )
    if not samples_csv.is_file():
        raise RunDirError(samples_csv, "missing: a run directory needs samples.csv")
    meta = load_meta(run_json)
    v1 = meta.schema == 1
    samples = tuple(
        _records(
            samples_csv,
            Sample,
            required=V1_SAMPLE_COLUMNS if v1 else SAMPLE_COLUMNS,
            known=SAMPLE_COLUMNS,
        )
    )
    latency_csv = path / "latency.csv"
    latency = None
    if latency_csv.is_file():
        latency = tuple(
            _records(latency_csv, LatencyRow, required=V1_LATENCY_COLUMNS, known=LATENCY_COLUMNS)
        )
    heap, pyspy = _load_profiles(path / "profiles")
    return Run(
        path=path,
        meta=meta,
        samples=samples,
        latency=latency,
        heap=heap,
        pyspy=pyspy,
        events=tuple(_load_events(path / "events.jsonl")),
    )


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(path, f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise RunDirError(path, f"not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise RunDirError(path, "expected a JSON object")
    return raw


def load_meta(path: Path) -> RunMeta:
    raw = read_json_object(path)
    schema = raw.get("schema")
    if schema not in READABLE_VERSIONS:
        known = ", ".join(str(v) for v in sorted(READABLE_VERSIONS))
        raise RunDirError(path, f"unsupported schema {schema!r} (this triage reads {known})")
    try:
        meta: RunMeta = from_json(RunMeta, raw)
    except JsonShapeError as e:
        raise RunDirError(path, f"'{e.where}': {e.problem}") from e
    if not meta.run_id or not meta.scenario:
        raise RunDirError(path, "'run_id' and 'scenario' must be non-empty strings")
    if meta.limit_bytes is not None and meta.limit_bytes <= 0:
        raise RunDirError(path, f"'limit_bytes' must be positive, got {meta.limit_bytes}")
    return meta


def _records(
    path: Path, cls: type, *, required: tuple[str, ...], known: tuple[str, ...]
) -> Iterator[Any]:
    """Records of `cls` from a CSV whose header carries at least `required`."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise RunDirError(path, "empty file: expected a header row")
            missing = [c for c in required if c not in header]
            if missing:
                raise RunDirError(path, f"missing column(s): {', '.join(missing)}")
            absent = frozenset(c for c in known if c not in header)
            for row in reader:
                if None in row:  # DictReader files extra cells under the None key
                    raise RunDirError(
                        path, f"line {reader.line_num}: more cells than header columns"
                    )
                try:
                    yield build(cls, row, missing_ok=absent)
                except CellError as e:
                    raise RunDirError(path, f"line {reader.line_num}, {e}") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunDirError(path, f"cannot read: {e}") from e


def _load_profiles(profiles: Path) -> tuple[tuple[tuple[int, HeapProfile], ...], dict[int, str]]:
    if not profiles.is_dir():
        return (), {}
    heap: list[tuple[int, HeapProfile]] = []
    pyspy: dict[int, str] = {}
    for batch_dir in sorted(profiles.iterdir()):
        m = _BATCH_DIR.match(batch_dir.name)
        if m is None or not batch_dir.is_dir():
            continue
        batch = int(m.group(1))
        for profiler in HEAP_PROFILERS:
            doc = batch_dir / f"{profiler}.json"
            if doc.is_file():
                heap.append((batch, load_heap_profile(doc, profiler)))
        dump = batch_dir / "pyspy.txt"
        if dump.is_file():
            try:
                pyspy[batch] = dump.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise RunDirError(dump, f"cannot read: {e}") from e
    return tuple(sorted(heap, key=lambda bh: bh[0])), pyspy


def load_heap_profile(path: Path, profiler: str = "memray") -> HeapProfile:
    raw = read_json_object(path)
    raw.setdefault("profiler", profiler)
    try:
        profile: HeapProfile = from_json(HeapProfile, raw)
    except JsonShapeError as e:
        raise RunDirError(path, f"'{e.where}': {e.problem}") from e
    return profile


def _load_events(path: Path) -> Iterator[Event]:
    if not path.is_file():
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(path, f"cannot read: {e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield from_json(Event, json.loads(line))
        except (json.JSONDecodeError, JsonShapeError) as e:
            if n == len(lines):
                return  # the last line of a run killed mid-write: what came before stands
            raise RunDirError(path, f"line {n}: {e}") from e
