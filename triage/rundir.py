"""Writes a run directory exactly as docs/architecture.md defines it.

The run directory is the contract between `reproduce` (which owns a cluster for a while) and
`report` (which must work later, offline, from a CI artifact). samples.csv is appended and
flushed after every row, and run.json is rewritten atomically at each milestone, so a run
killed at any point still leaves a directory the report can read up to that point.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from triage.runformat import LATENCY_COLUMNS, SAMPLE_COLUMNS
from triage.runformat import RUN_SCHEMA as SCHEMA


def new_run_id(scenario: str, *, now: float | None = None) -> str:
    """`YYYYmmdd-HHMMSS-<scenario>-<4 hex>`: sortable, readable, unique enough per second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{scenario}-{secrets.token_hex(2)}"


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class RunDir:
    """One run's directory; create it before the first cluster change."""

    def __init__(self, path: Path, *, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        path.mkdir(parents=True, exist_ok=True)
        self._meta: dict[str, Any] = {"schema": SCHEMA, "run_id": run_id}
        self._samples: IO[str] | None = None
        self._writer: Any = None
        self.started_monotonic = time.monotonic()

    # -- run.json -----------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        return self._meta

    def update_meta(self, **fields: Any) -> None:
        """Merge `fields` into run.json and write it atomically."""
        self._meta.update(fields)
        tmp = self.path / f".run.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self._meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / "run.json")

    # -- samples.csv --------------------------------------------------------------------------

    def add_sample(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing columns are empty) and flush it to disk."""
        if self._samples is None:
            self._samples = (self.path / "samples.csv").open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._samples)
            self._writer.writerow(SAMPLE_COLUMNS)
        unknown = set(row) - set(SAMPLE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown samples.csv columns: {sorted(unknown)}")
        self._writer.writerow([_cell(row.get(c)) for c in SAMPLE_COLUMNS])
        self._samples.flush()
        os.fsync(self._samples.fileno())

    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic

    # -- latency.csv --------------------------------------------------------------------------

    def write_latency(self, rows: Iterable[Mapping[str, str]]) -> Path:
        path = self.path / "latency.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=LATENCY_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: row.get(c, "") for c in LATENCY_COLUMNS})
        return path

    def close(self) -> None:
        if self._samples is not None:
            self._samples.close()
            self._samples = None
