"""The run directory's file format, in one place for the writer and the reader.

`triage reproduce` writes run directories and `triage report` reads them, possibly years
apart and on another machine; both take the schema version and the column order from here,
so the two can never drift. Stdlib only: the report side must stay free of cluster code.
"""

from __future__ import annotations

#: run.json "schema"; bump when a reader could misread an older directory.
RUN_SCHEMA = 1

#: samples.csv, in order (docs/architecture.md describes each column).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "kind",
    "batch",
    "t_seconds",
    "timestamp",
    "sessions",
    "namespaces",
    "objects",
    "working_set_bytes",
    "rss_bytes",
    "metrics_api_bytes",
    "operator_rss_bytes",
    "restart_count",
    "oom_count",
    "oom_killed",
    "batch_seconds",
    "create_rate",
    "pod",
)

#: latency.csv, in order: per-session stage timestamps (epoch seconds).
LATENCY_REQUIRED: tuple[str, ...] = (
    "session",
    "namespace",
    "created",
    "pod_created",
    "scheduled",
    "running",
    "ready",
)
#: Written since the column was added; optional when reading older runs. For a runner that
#: is not Running at the end: what held it (e.g. "Unschedulable: 0/1 nodes are available:
#: 1 Insufficient cpu.", "ContainerCreating").
LATENCY_COLUMNS: tuple[str, ...] = (*LATENCY_REQUIRED, "waiting")
