"""The run directory: one package for its format, its writer and its reader.

`reproduce` writes what `report`, `compare` and `ci` read, through the same record
declarations (`format`), so the two sides cannot drift. Stdlib only: the report renders
offline from a run directory, long after the cluster that produced it is gone.

| file | record |
| --- | --- |
| `run.json` | `RunMeta` (with `Outcome`, `ProfilerInfo`) |
| `samples.csv` | `Sample` (with `Memory`, `PodState`) |
| `latency.csv` | `LatencyRow` |
| `events.jsonl` | `Event` |
| `profiles/batch-NNNN/{memray,pprof}.json` | `HeapProfile` (with `Site`, `Frame`) |
| `profiles/batch-NNNN/pyspy.txt` | py-spy dump text |
| `journal.json` | `triage.journal` (the restore contract) |
"""

from triage.errors import RunDirError
from triage.rundir.format import (
    FORMAT_VERSION,
    Event,
    Frame,
    HeapProfile,
    LatencyRow,
    Memory,
    Outcome,
    PodState,
    ProfilerInfo,
    RunMeta,
    Sample,
    Site,
)
from triage.rundir.reader import Run, load_run, resolve_run_dir
from triage.rundir.writer import RunWriter, epoch, iso_now, new_run_id

__all__ = [
    "FORMAT_VERSION",
    "Event",
    "Frame",
    "HeapProfile",
    "LatencyRow",
    "Memory",
    "Outcome",
    "PodState",
    "ProfilerInfo",
    "Run",
    "RunDirError",
    "RunMeta",
    "RunWriter",
    "Sample",
    "Site",
    "epoch",
    "iso_now",
    "load_run",
    "new_run_id",
    "resolve_run_dir",
]
