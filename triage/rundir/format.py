"""Every record of a run directory, declared once: the writer and the reader derive from here.

`triage reproduce` writes run directories and `triage report` reads them, possibly years
apart and on another machine. Each record is a dataclass; its fields (in order, nested
records flattened) are the CSV columns or JSON keys, and their annotations are the types the
reader checks, so the two sides cannot drift and a new column is one new field.

The format carries a version (`FORMAT_VERSION`, run.json's "schema"). Readers accept every
version they know: a field added after version 1 has a default, and a column older files do
not have is read as "unknown" (None), never as zero. Stdlib only: the report side must stay
free of cluster code.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

#: run.json "schema". 1: the first format. 2: the memory breakdown, cold-start and event
#: records, profiler sites with stacks, pprof profiles.
FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})

SampleKind = Literal["baseline", "batch", "post-oom", "cold-start"]
SAMPLE_KINDS: frozenset[str] = frozenset(typing.get_args(SampleKind))
OUTCOME_STATUSES = frozenset({"oom", "max-batches", "completed", "interrupted", "error", "stopped"})


@dataclass(frozen=True, slots=True)
class Memory:
    """The container's memory at one moment, broken down as far as the cluster allows.

    None is "could not be had" (a distroless image has no `cat` for memory.stat, a cluster
    without nodes/proxy access has no kubelet figures): never zero.
    """

    #: What the kubelet and `kubectl top` report: usage minus inactive file pages.
    working_set_bytes: int | None = None
    #: Anonymous memory as the kubelet reports it (cgroup v1 total_rss, v2 anon).
    rss_bytes: int | None = None
    #: Page cache charged to the container (v1 total_cache, v2 file).
    cache_bytes: int | None = None
    #: File pages mapped into the processes (part of the cache).
    mapped_file_bytes: int | None = None
    #: Anonymous memory from the cgroup's own memory.stat (the kubelet's lags by a scrape).
    anon_bytes: int | None = None
    #: tmpfs and shared memory: reclaimable only by swapping, so it kills like anon does.
    shmem_bytes: int | None = None
    #: Kernel memory charged to the cgroup (v2: stacks, page tables, unreclaimable slab).
    kernel_bytes: int | None = None
    #: What the kernel cannot reclaim: the figure the OOM killer acts on. `memory_source`
    #: says how it was computed (docs/architecture.md has the formula per cgroup version).
    unreclaimable_bytes: int | None = None
    #: cgroup usage (v1 usage_in_bytes, v2 memory.current): all of the above and more.
    usage_bytes: int | None = None
    #: metrics.k8s.io, when a metrics-server is installed.
    metrics_api_bytes: int | None = None
    #: The operator's own process RSS gauge from its /metrics (our operator only).
    operator_rss_bytes: int | None = None
    #: "memory.stat v1" | "memory.stat v2" | "cadvisor" | "summary" | "" (none).
    memory_source: str = ""


@dataclass(frozen=True, slots=True)
class PodState:
    """The operator pod and container the sample was taken from, and their restart story."""

    pod: str = ""
    container: str = ""
    restart_count: int = 0
    #: Cumulative OOM kills (agentic_operator.oomcount semantics: a lower bound).
    oom_count: int = 0
    #: An OOM kill was newly observed by this sample.
    oom_killed: bool = False
    ready: bool = False
    #: "running" | "waiting:<reason>" | "terminated:<reason>" | "absent".
    state: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """One row of samples.csv: the load so far and the operator's memory after it."""

    kind: SampleKind
    batch: int
    t_seconds: float
    timestamp: str
    #: Cumulative objects the run created so far.
    sessions: int
    namespaces: int
    objects: int
    memory: Memory
    state: PodState
    #: Seconds the loader took for this batch, and its create rate.
    batch_seconds: float | None = None
    create_rate: float | None = None
    #: Seconds from the end of the load to a settled reading (adaptive settle).
    settle_seconds: float | None = None
    #: Cumulative bytes of JSON the run created (objects with their status): with a
    #: session-shape sweep it separates the cost per object from the cost per byte.
    payload_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One row of latency.csv: stage timestamps (epoch seconds) of one session's runner."""

    session: str
    namespace: str
    created: float | None = None
    pod_created: float | None = None
    scheduled: float | None = None
    running: float | None = None
    ready: float | None = None
    #: What held a runner that never reached Running ("" when it did).
    waiting: str = ""


LATENCY_STAGES = ("created", "pod_created", "scheduled", "running", "ready")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of events.jsonl: something that happened to the run besides its samples.

    Kinds: container-restarted (the kubelet's reason, exit code and the container's last
    words), pod-replaced (deleted or evicted, with its reason: never an OOM), leader-changed,
    leader-lost, no-leader, deployment-changed (another writer, with its field manager),
    cold-start, restore (with when it began), cleanup, credentials-renewed, apiserver-unreachable,
    profile-error, profiles-read (the profiler's reads were done).
    """

    kind: str
    t_seconds: float
    timestamp: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Site:
    """One allocation site of a heap profile, with the stack that led to it (leaf first)."""

    function: str
    file: str
    line: int
    bytes: int
    count: int
    stack: tuple[Frame, ...] = ()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.function, self.file, self.line)


@dataclass(frozen=True, slots=True)
class HeapProfile:
    """profiles/batch-NNNN/{memray,pprof}.json: the heap live at that batch and its top sites."""

    heap_bytes: int
    allocations: int
    top: tuple[Site, ...]
    #: "memray" (Python heap) or "pprof" (Go inuse_space).
    profiler: str = "memray"
    peak_bytes: int | None = None
    total_allocations: int | None = None
    #: The capture or profile file it was read from (under profiles/raw/).
    source: str = ""
    #: memray traced pymalloc (object attribution) rather than arenas only.
    python_allocators: bool | None = None
    #: The capture was cut off (a process killed mid-write); what could be read is here.
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    #: oom | max-batches | completed | interrupted | error | stopped (another writer, a lock).
    status: str
    message: str = ""
    oom_batch: int | None = None
    oom_sessions: int | None = None


@dataclass(frozen=True, slots=True)
class ProfilerInfo:
    """Which profiler ran, and what it cost: the figures it explains must not include it."""

    kind: str = "none"  # memray | py-spy | pprof | none
    #: Memory with the profiler minus without it, both at idle before any load.
    fixed_cost_bytes: int | None = None
    #: How the run accounts for that cost: "oom-point-corrected" (the report moves the OOM
    #: point by fixed_cost / slope) or "" when there is nothing to account for.
    accounting: str = ""
    #: The profiler's settings (native traces, python allocators, port, container, command).
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunMeta:
    """run.json: what was run against what, and how it ended. Rewritten at each milestone."""

    schema: int
    run_id: str
    scenario: str
    started_at: str = ""
    finished_at: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    limit_bytes: int | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)
    #: The Deployment, container and command under test, and its language (python | go).
    target: dict[str, Any] = field(default_factory=dict)
    #: Every operator Deployment that was running during the run (name, namespace, replicas),
    #: so a reader knows which operators could have acted on the load.
    operators: tuple[dict[str, Any], ...] = ()
    planned: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=lambda: Outcome(status="interrupted"))
    restore: dict[str, Any] = field(default_factory=dict)
    cleanup: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    profiler: ProfilerInfo = field(default_factory=ProfilerInfo)
    #: How `unreclaimable_bytes` was computed on this cluster (see Memory).
    memory_formula: str = ""
    #: Older runs kept profile notes at the top level.
    profile_notes: tuple[str, ...] = ()


# -- deriving columns and coding values --------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def columns(cls: type) -> tuple[str, ...]:
    """The CSV columns of `cls`, nested records flattened in field order."""
    hints = _hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        out.extend(columns(tp) if _is_record(tp) else (f.name,))
    return tuple(out)


def flatten(record: Any) -> dict[str, Any]:
    """`record` as {column: value}, nested records flattened."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(flatten(value))
        else:
            out[f.name] = value
    return out


def cell(value: Any) -> str:
    """One CSV cell: empty for unknown, 1/0 for booleans, floats to the millisecond."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class CellError(ValueError):
    """A cell that does not hold what its column declares; `expected` says what would."""

    def __init__(self, column: str, expected: str, got: str) -> None:
        super().__init__(f"column '{column}': expected {expected}, got {got!r}")
        self.column, self.expected, self.got = column, expected, got


def _base(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


_EXPECTED: dict[Any, str] = {int: "an integer", float: "a number", bool: "0 or 1"}


def parse_cell(column: str, tp: Any, text: str) -> Any:
    """Parse one cell to the declared type `tp`; raises CellError naming the column."""
    base, optional = _base(tp)
    text = text.strip()
    if text == "" and (optional or base is str):
        return None if optional else ""
    if optional and text.lower() == "nan":  # pandas writes unknown as nan
        return None
    if text == "":
        raise CellError(column, _EXPECTED.get(base, "a value"), text)
    if typing.get_origin(base) is Literal:
        if text not in typing.get_args(base):
            raise CellError(column, f"one of {', '.join(typing.get_args(base))}", text)
        return text
    if base is str:
        return text
    try:
        number = float(text)
    except ValueError:
        raise CellError(column, "a number", text) from None
    if not math.isfinite(number):
        raise CellError(column, "a finite number", text)
    if base is float:
        return number
    if number != int(number):  # writers that went through a float emit "123.0": still an int
        raise CellError(column, "an integer", text)
    if base is bool:
        if number not in (0, 1):
            raise CellError(column, "0 or 1", text)
        return bool(number)
    return int(number)


def build(cls: type, row: dict[str, str], *, missing_ok: frozenset[str] = frozenset()) -> Any:
    """A `cls` record from a CSV row; columns in `missing_ok` that are absent take defaults."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_record(tp):
            kwargs[f.name] = build(tp, row, missing_ok=missing_ok)
        elif f.name in row and row[f.name] is not None:
            kwargs[f.name] = parse_cell(f.name, tp, row[f.name])
        elif f.name not in missing_ok:
            raise CellError(f.name, "a value", "")
    return cls(**kwargs)


def iter_fields(cls: type) -> Iterator[tuple[str, Any]]:
    """(column, type) in order, nested records flattened."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_record(tp):
            yield from iter_fields(tp)
        else:
            yield f.name, tp


SAMPLE_COLUMNS = columns(Sample)
LATENCY_COLUMNS = columns(LatencyRow)
#: Columns the first format version wrote; a version-1 file must have these, a column
#: added since is read as unknown when absent.
V1_SAMPLE_COLUMNS = (
    "kind", "batch", "t_seconds", "timestamp", "sessions", "namespaces", "objects",
    "working_set_bytes", "rss_bytes", "metrics_api_bytes", "operator_rss_bytes",
    "restart_count", "oom_count", "oom_killed", "batch_seconds", "create_rate", "pod",
)  # fmt: skip
V1_LATENCY_COLUMNS = ("session", "namespace", *LATENCY_STAGES)


def record_json(record: Any) -> Any:
    """A record (or anything JSON-able holding records) as plain JSON data."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: record_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, tuple | list):
        return [record_json(v) for v in record]
    if isinstance(record, dict):
        return {k: record_json(v) for k, v in record.items()}
    return record


class JsonShapeError(ValueError):
    """A JSON document that does not have its record's shape; `where` is the key path."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem = where, problem


def from_json(cls: type, data: Any, where: str = "") -> Any:
    """A `cls` record from parsed JSON, checked against its annotations; unknown keys ignored."""
    if not isinstance(data, dict):
        raise JsonShapeError(where, "expected an object")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise JsonShapeError(_join(where, f.name), "missing")
            continue
        kwargs[f.name] = _value(hints[f.name], data[f.name], _join(where, f.name))
    return cls(**kwargs)


def _join(where: str, key: str | int) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)


def _value(tp: Any, value: Any, where: str) -> Any:
    base, optional = _base(tp)
    if value is None:
        if optional:
            return None
        raise JsonShapeError(where, "must not be null")
    if _is_record(base):
        return from_json(base, value, where)
    origin = typing.get_origin(base)
    if origin is tuple:
        if not isinstance(value, list):
            raise JsonShapeError(where, "expected a list")
        item = typing.get_args(base)[0]
        return tuple(_value(item, v, _join(where, i)) for i, v in enumerate(value))
    if origin is dict or base is dict:
        if not isinstance(value, dict):
            raise JsonShapeError(where, "expected an object")
        return dict(value)
    if origin is Literal:
        if value not in typing.get_args(base):
            raise JsonShapeError(where, f"expected one of {typing.get_args(base)}, got {value!r}")
        return value
    expected: dict[Any, tuple[type, ...]] = {
        int: (int,),
        float: (int, float),
        str: (str,),
        bool: (bool,),
    }
    ok = expected.get(base)
    if ok is None:
        return value  # Any
    # bool is an int subclass; true/false in a byte count is a writer bug, not a 1.
    if not isinstance(value, ok) or (base is not bool and isinstance(value, bool)):
        raise JsonShapeError(where, f"expected {base.__name__}, got {value!r}")
    return float(typing.cast(float, value)) if base is float else value
