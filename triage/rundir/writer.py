"""Writes a run directory from the records in `triage.rundir.format`.

The run directory is the contract between `reproduce` (which owns a cluster for a while) and
`report` (which must work later, offline, from a CI artifact). samples.csv and events.jsonl
are appended and fsync'd after every record, and run.json is rewritten atomically at each
milestone, so a run killed at any point still leaves a directory the report can read up to
that point.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from triage.rundir.format import (
    FORMAT_VERSION,
    LATENCY_COLUMNS,
    SAMPLE_COLUMNS,
    Event,
    HeapProfile,
    LatencyRow,
    RunMeta,
    Sample,
    cell,
    flatten,
    record_json,
)

_META_FIELDS = frozenset(f.name for f in dataclasses.fields(RunMeta))


def new_run_id(scenario: str, *, now: float | None = None) -> str:
    """`YYYYmmdd-HHMMSS-<scenario>-<4 hex>`: sortable, readable, unique enough per second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{scenario}-{secrets.token_hex(2)}"


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch(text: str | None) -> float | None:
    """Epoch seconds of a Kubernetes timestamp (`...Z`, any precision); None if unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write-then-rename: after a crash the file is the old or the new version, never torn."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class RunWriter:
    """One run's directory; create it before the first cluster change."""

    def __init__(self, path: Path, *, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        path.mkdir(parents=True, exist_ok=True)
        self._meta: dict[str, Any] = {"schema": FORMAT_VERSION, "run_id": run_id}
        self._samples: IO[str] | None = None
        self._writer: Any = None
        self.started_monotonic = time.monotonic()

    # -- run.json -----------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        return self._meta

    def update_meta(self, **fields: Any) -> None:
        """Merge `fields` (RunMeta's fields, records allowed) into run.json, atomically."""
        unknown = set(fields) - _META_FIELDS
        if unknown:
            raise ValueError(f"run.json has no field(s) {sorted(unknown)}")
        self._meta.update({k: record_json(v) for k, v in fields.items()})
        atomic_write_text(self.path / "run.json", json.dumps(self._meta, indent=2) + "\n")

    # -- samples.csv --------------------------------------------------------------------------

    def add_sample(self, sample: Sample) -> None:
        """Append one row and flush it to disk."""
        if self._samples is None:
            self._samples = (self.path / "samples.csv").open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._samples)
            self._writer.writerow(SAMPLE_COLUMNS)
        row = flatten(sample)
        self._writer.writerow([cell(row[c]) for c in SAMPLE_COLUMNS])
        self._samples.flush()
        os.fsync(self._samples.fileno())

    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic

    # -- events.jsonl -------------------------------------------------------------------------

    def event(self, kind: str, message: str, **data: Any) -> Event:
        """Record something that happened to the run (see `Event`)."""
        ev = Event(
            kind=kind,
            t_seconds=round(self.elapsed(), 3),
            timestamp=iso_now(),
            message=message,
            data=data,
        )
        with (self.path / "events.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record_json(ev), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return ev

    # -- latency.csv and profiles -----------------------------------------------------------

    def write_latency(self, rows: Iterable[LatencyRow]) -> Path:
        path = self.path / "latency.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(LATENCY_COLUMNS)
            for row in rows:
                flat = flatten(row)
                writer.writerow([cell(flat[c]) for c in LATENCY_COLUMNS])
        return path

    def batch_dir(self, batch: int) -> Path:
        d = self.path / "profiles" / f"batch-{batch:04d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_profile(self, batch: int, profile: HeapProfile) -> Path:
        """profiles/batch-NNNN/<profiler>.json."""
        out = self.batch_dir(batch) / f"{profile.profiler}.json"
        atomic_write_text(out, json.dumps(record_json(profile), indent=1) + "\n", fsync=False)
        return out

    def write_text(self, batch: int, name: str, text: str) -> Path:
        """A text artefact of a batch (a py-spy dump)."""
        out = self.batch_dir(batch) / name
        atomic_write_text(out, text, fsync=False)
        return out

    def close(self) -> None:
        if self._samples is not None:
            self._samples.close()
            self._samples = None
