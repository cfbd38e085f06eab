"""Load and validate a run directory as docs/architecture.md defines it.

The run directory is the only contract between the code that touches a cluster (reproduce)
and the code that explains what happened (report). Validating it here, strictly and with
errors that name the file, row and column, means a schema drift shows up as one readable line
instead of as a wrong number in a figure that somebody approves in a PR.

Values are parsed with the csv module into typed rows rather than a DataFrame: the row-level
error messages are the point, and the analysis needs only a few numeric arrays.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from triage.report.errors import RunDirError
from triage.runformat import LATENCY_REQUIRED, SAMPLE_COLUMNS
from triage.runformat import RUN_SCHEMA as SCHEMA_VERSION

SAMPLE_KINDS = frozenset({"baseline", "batch", "post-oom"})
OUTCOME_STATUSES = frozenset({"oom", "max-batches", "completed", "interrupted", "error"})

SampleKind = Literal["baseline", "batch", "post-oom"]

_BATCH_DIR = re.compile(r"^batch-(\d+)$")


@dataclass(frozen=True, slots=True)
class Sample:
    """One row of samples.csv."""

    kind: SampleKind
    batch: int
    t_seconds: float
    timestamp: str
    sessions: int
    namespaces: int
    objects: int
    #: The memory columns may be empty when a scrape failed (e.g. while the container
    #: restarts): a missing reading is not a malformed file.
    working_set_bytes: int | None
    rss_bytes: int | None
    metrics_api_bytes: int | None
    operator_rss_bytes: int | None
    restart_count: int
    oom_count: int
    oom_killed: bool
    batch_seconds: float | None
    create_rate: float | None
    pod: str


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One row of latency.csv: stage timestamps of one session, None when never reached."""

    session: str
    namespace: str
    created: float | None
    pod_created: float | None
    scheduled: float | None
    running: float | None
    ready: float | None
    #: What held a runner that never reached Running ("" when it did, or in older runs).
    waiting: str = ""


@dataclass(frozen=True, slots=True)
class AllocationSite:
    function: str
    file: str
    line: int
    bytes: int
    count: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.function, self.file, self.line)


@dataclass(frozen=True, slots=True)
class MemrayBatch:
    """profiles/batch-NNNN/memray.json, with the batch number taken from the directory."""

    batch: int
    heap_bytes: int
    allocations: int
    top: tuple[AllocationSite, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    oom_batch: int | None
    oom_sessions: int | None
    message: str


@dataclass(frozen=True, slots=True)
class RunMeta:
    """The parts of run.json the report uses; everything else stays in `raw`."""

    run_id: str
    scenario: str
    started_at: str
    finished_at: str
    options: Mapping[str, Any]
    limit_bytes: int | None
    versions: Mapping[str, Any]
    cluster: Mapping[str, Any]
    outcome: Outcome
    restore: Mapping[str, Any]
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunDir:
    """Everything a report needs, read from one run directory."""

    path: Path
    meta: RunMeta
    samples: tuple[Sample, ...]
    latency: tuple[LatencyRow, ...] | None
    memray: tuple[MemrayBatch, ...] = ()
    pyspy: Mapping[int, str] = field(default_factory=dict)


def load_run(path: Path) -> RunDir:
    """Read and validate a run directory; raise RunDirError naming the offending file."""
    if not path.exists():
        raise RunDirError(path, "no such directory")
    if not path.is_dir():
        raise RunDirError(path, "not a directory")
    run_json = path / "run.json"
    samples_csv = path / "samples.csv"
    if not run_json.is_file():
        raise RunDirError(
            run_json, "missing: not a triage run directory (expected run.json and samples.csv)"
        )
    if not samples_csv.is_file():
        raise RunDirError(samples_csv, "missing: a run directory needs samples.csv")
    meta = _load_meta(run_json)
    samples = tuple(_load_samples(samples_csv))
    latency_csv = path / "latency.csv"
    latency = tuple(_load_latency(latency_csv)) if latency_csv.is_file() else None
    memray, pyspy = _load_profiles(path / "profiles")
    return RunDir(
        path=path, meta=meta, samples=samples, latency=latency, memray=memray, pyspy=pyspy
    )


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(path, f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise RunDirError(path, f"not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise RunDirError(path, "expected a JSON object")
    return raw


def _load_meta(path: Path) -> RunMeta:
    raw = _read_json_object(path)
    schema = raw.get("schema")
    if schema != SCHEMA_VERSION:
        raise RunDirError(path, f"unsupported schema {schema!r} (this triage reads schema 1)")

    def text(key: str, *, required: bool = True) -> str:
        value = raw.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise RunDirError(path, f"'{key}' must be a non-empty string")
        return value

    def obj(key: str, *, required: bool = False) -> dict[str, Any]:
        value = raw.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise RunDirError(path, f"'{key}' must be an object")
        return value

    limit = raw.get("limit_bytes")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise RunDirError(path, f"'limit_bytes' must be a positive integer or null, got {limit!r}")

    outcome_raw = obj("outcome", required=True)
    status = outcome_raw.get("status")
    if status not in OUTCOME_STATUSES:
        raise RunDirError(
            path, f"outcome.status must be one of {sorted(OUTCOME_STATUSES)}, got {status!r}"
        )
    outcome = Outcome(
        status=str(status),
        oom_batch=_optional_int(path, "outcome.oom_batch", outcome_raw.get("oom_batch")),
        oom_sessions=_optional_int(path, "outcome.oom_sessions", outcome_raw.get("oom_sessions")),
        message=str(outcome_raw.get("message") or ""),
    )
    return RunMeta(
        run_id=text("run_id"),
        scenario=text("scenario"),
        started_at=text("started_at", required=False),
        finished_at=text("finished_at", required=False),
        options=obj("options", required=True),
        limit_bytes=limit,
        versions=obj("versions"),
        cluster=obj("cluster"),
        outcome=outcome,
        restore=obj("restore"),
        raw=raw,
    )


def _optional_int(path: Path, name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunDirError(path, f"'{name}' must be an integer or null, got {value!r}")
    return value


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) after checking that the header carries every column."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise RunDirError(path, "empty file: expected a header row")
            missing = [c for c in columns if c not in header]
            if missing:
                raise RunDirError(path, f"missing column(s): {', '.join(missing)}")
            for row in reader:
                if None in row:
                    # DictReader files extra cells under the None key.
                    raise RunDirError(
                        path, f"line {reader.line_num}: more cells than header columns"
                    )
                yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunDirError(path, f"cannot read: {e}") from e


class _Cells:
    """Typed access to one CSV row that reports file, line and column on a bad cell."""

    def __init__(self, path: Path, line: int, row: Mapping[str, str | None]) -> None:
        self.path, self.line, self.row = path, line, row

    def _bad(self, column: str, expected: str) -> RunDirError:
        return RunDirError(
            self.path,
            f"line {self.line}, column '{column}': expected {expected}, got {self.row[column]!r}",
        )

    def raw(self, column: str) -> str:
        value = self.row[column]
        if value is None:
            raise self._bad(column, "a value")
        return value.strip()

    def opt_float(self, column: str) -> float | None:
        value = self.raw(column)
        if value == "" or value.lower() == "nan":
            return None
        try:
            number = float(value)
        except ValueError as e:
            raise self._bad(column, "a number") from e
        if not math.isfinite(number):
            raise self._bad(column, "a finite number")
        return number

    def num(self, column: str) -> float:
        number = self.opt_float(column)
        if number is None:
            raise self._bad(column, "a number")
        return number

    def opt_int(self, column: str) -> int | None:
        number = self.opt_float(column)
        if number is None:
            return None
        # Writers that went through a float column emit "123.0"; that is still an integer.
        if number != int(number):
            raise self._bad(column, "an integer")
        return int(number)

    def int(self, column: str) -> int:
        number = self.opt_int(column)
        if number is None:
            raise self._bad(column, "an integer")
        return number


def _load_samples(path: Path) -> Iterator[Sample]:
    for line, row in _rows(path, SAMPLE_COLUMNS):
        c = _Cells(path, line, row)
        kind = c.raw("kind")
        if kind not in SAMPLE_KINDS:
            raise c._bad("kind", "one of baseline, batch, post-oom")
        oom_killed = c.int("oom_killed")
        if oom_killed not in (0, 1):
            raise c._bad("oom_killed", "0 or 1")
        yield Sample(
            kind=kind,  # type: ignore[arg-type]  # checked against SAMPLE_KINDS above
            batch=c.int("batch"),
            t_seconds=c.num("t_seconds"),
            timestamp=c.raw("timestamp"),
            sessions=c.int("sessions"),
            namespaces=c.int("namespaces"),
            objects=c.int("objects"),
            working_set_bytes=c.opt_int("working_set_bytes"),
            rss_bytes=c.opt_int("rss_bytes"),
            metrics_api_bytes=c.opt_int("metrics_api_bytes"),
            operator_rss_bytes=c.opt_int("operator_rss_bytes"),
            restart_count=c.int("restart_count"),
            oom_count=c.int("oom_count"),
            oom_killed=bool(oom_killed),
            batch_seconds=c.opt_float("batch_seconds"),
            create_rate=c.opt_float("create_rate"),
            pod=c.raw("pod"),
        )


def _load_latency(path: Path) -> Iterator[LatencyRow]:
    for line, row in _rows(path, LATENCY_REQUIRED):
        c = _Cells(path, line, row)
        yield LatencyRow(
            session=c.raw("session"),
            namespace=c.raw("namespace"),
            created=c.opt_float("created"),
            pod_created=c.opt_float("pod_created"),
            scheduled=c.opt_float("scheduled"),
            running=c.opt_float("running"),
            ready=c.opt_float("ready"),
            waiting=(row.get("waiting") or "").strip(),
        )


def _load_profiles(profiles: Path) -> tuple[tuple[MemrayBatch, ...], dict[int, str]]:
    if not profiles.is_dir():
        return (), {}
    memray: list[MemrayBatch] = []
    pyspy: dict[int, str] = {}
    for batch_dir in sorted(profiles.iterdir()):
        m = _BATCH_DIR.match(batch_dir.name)
        if m is None or not batch_dir.is_dir():
            continue
        batch = int(m.group(1))
        memray_json = batch_dir / "memray.json"
        if memray_json.is_file():
            memray.append(_load_memray(memray_json, batch))
        pyspy_txt = batch_dir / "pyspy.txt"
        if pyspy_txt.is_file():
            try:
                pyspy[batch] = pyspy_txt.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise RunDirError(pyspy_txt, f"cannot read: {e}") from e
    return tuple(sorted(memray, key=lambda b: b.batch)), pyspy


def _load_memray(path: Path, batch: int) -> MemrayBatch:
    raw = _read_json_object(path)
    heap, allocations, top = (
        _int_or_none(raw.get("heap_bytes")),
        _int_or_none(raw.get("allocations")),
        raw.get("top"),
    )
    if heap is None or allocations is None:
        raise RunDirError(path, "'heap_bytes' and 'allocations' must be integers")
    if not isinstance(top, list):
        raise RunDirError(path, "'top' must be a list")
    sites: list[AllocationSite] = []
    for i, site in enumerate(top):
        if not isinstance(site, dict):
            raise RunDirError(path, f"top[{i}] must be an object")
        function, file = site.get("function"), site.get("file")
        line = _int_or_none(site.get("line"))
        size, count = _int_or_none(site.get("bytes")), _int_or_none(site.get("count"))
        if not isinstance(function, str) or not isinstance(file, str):
            raise RunDirError(path, f"top[{i}]: 'function' and 'file' must be strings")
        if line is None or size is None or count is None:
            raise RunDirError(path, f"top[{i}]: 'line', 'bytes' and 'count' must be integers")
        sites.append(AllocationSite(function, file, line, size, count))
    return MemrayBatch(batch=batch, heap_bytes=heap, allocations=allocations, top=tuple(sites))


def _int_or_none(value: object) -> int | None:
    # bool is an int subclass; true/false in a byte count is a writer bug, not a 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
