"""A tiny Prometheus registry and text exposition (format 0.0.4) without prometheus_client.

prometheus_client is fine but costs import time and memory for features the operator does
not use (multiprocess mode, OpenMetrics, exemplars). The operator needs counters, gauges
(some computed at scrape time, e.g. cache sizes and RSS) and histograms, rendered as text.
All families are thread-safe; one lock per family keeps the per-sample cost at a float.
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_BUCKETS",
    "REGISTRY",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "queue_metrics",
    "register_process_metrics",
]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

LabelValues = tuple[str, ...]
GaugeCallback = Callable[[], float | Iterable[tuple[Sequence[str], float]]]


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, values: Sequence[Any], kw: dict[str, Any]) -> LabelValues:
        if kw:
            if values:
                raise ValueError("pass label values positionally or by name, not both")
            try:
                values = [kw[n] for n in self.labelnames]
            except KeyError as e:
                raise ValueError(f"{self.name}: missing label {e}") from e
            if len(kw) != len(self.labelnames):
                raise ValueError(f"{self.name}: unexpected labels {sorted(kw)}")
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values!r}")
        return tuple(str(v) for v in values)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _ValueFamily(_Family):
    """A family holding one float per label set: what counters and gauges share."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str], *, zero: bool) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[LabelValues, float] = {}
        if zero and not self.labelnames:
            self._values[()] = 0.0

    def _child_key(self, values: Sequence[Any], kw: dict[str, Any]) -> LabelValues:
        key = self._key(values, kw)
        with self._lock:
            self._values.setdefault(key, 0.0)
        return key

    def _add(self, key: LabelValues, amount: float) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def get(self, *values: Any) -> float:
        return self._values.get(tuple(str(v) for v in values), 0.0)

    def remove(self, *values: Any) -> None:
        with self._lock:
            self._values.pop(tuple(str(v) for v in values), None)

    def _lines(self, values: dict[LabelValues, float]) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}" for k, v in sorted(values.items())
        ]

    def samples(self) -> list[str]:
        with self._lock:
            values = dict(self._values)
        return self._lines(values)


class _CounterChild:
    __slots__ = ("_family", "_key")

    def __init__(self, family: Counter, key: LabelValues) -> None:
        self._family = family
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        self._family._inc(self._key, amount)

    def get(self) -> float:
        return self._family._values.get(self._key, 0.0)


class Counter(_ValueFamily):
    """Monotonic counter; `inc()` directly when unlabelled, else `.labels(...).inc()`."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames, zero=True)

    def labels(self, *values: Any, **kw: Any) -> _CounterChild:
        return _CounterChild(self, self._child_key(values, kw))

    def _inc(self, key: LabelValues, amount: float) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self._add(key, amount)

    def inc(self, amount: float = 1.0) -> None:
        self._inc(self._key((), {}), amount)


class _GaugeChild:
    __slots__ = ("_family", "_key")

    def __init__(self, family: Gauge, key: LabelValues) -> None:
        self._family = family
        self._key = key

    def set(self, value: float) -> None:
        self._family._set(self._key, value)

    def inc(self, amount: float = 1.0) -> None:
        self._family._add(self._key, amount)

    def dec(self, amount: float = 1.0) -> None:
        self._family._add(self._key, -amount)

    def get(self) -> float:
        return self._family._values.get(self._key, 0.0)


class Gauge(_ValueFamily):
    """A value that goes up and down, or a callback evaluated at scrape time.

    An unlabelled callback returns a float; a labelled one returns (labelvalues, value)
    pairs, so e.g. one callback can report every cache's size.
    """

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str],
        callback: GaugeCallback | None = None,
    ) -> None:
        super().__init__(name, help, labelnames, zero=callback is None)
        self._callback = callback

    def set_function(self, callback: GaugeCallback) -> None:
        self._callback = callback

    def labels(self, *values: Any, **kw: Any) -> _GaugeChild:
        return _GaugeChild(self, self._child_key(values, kw))

    def _set(self, key: LabelValues, value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def set(self, value: float) -> None:
        self._set(self._key((), {}), value)

    def inc(self, amount: float = 1.0) -> None:
        self._add(self._key((), {}), amount)

    def dec(self, amount: float = 1.0) -> None:
        self._add(self._key((), {}), -amount)

    def samples(self) -> list[str]:
        with self._lock:
            values = dict(self._values)
        if self._callback is not None:
            out = self._callback()
            if isinstance(out, int | float):
                values[()] = float(out)
            else:
                for labelvalues, v in out:
                    values[tuple(str(x) for x in labelvalues)] = float(v)
        return self._lines(values)


class _HistogramChild:
    __slots__ = ("_family", "_key")

    def __init__(self, family: Histogram, key: LabelValues) -> None:
        self._family = family
        self._key = key

    def observe(self, value: float) -> None:
        self._family._observe(self._key, value)

    def time(self) -> _Timer:
        return _Timer(self.observe)


class _Timer:
    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._start = 0.0

    def __enter__(self) -> _Timer:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._observe(time.monotonic() - self._start)


class Histogram(_Family):
    """Cumulative buckets + sum + count, as Prometheus expects."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str],
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if "le" in labelnames:
            raise ValueError("'le' is reserved for histogram buckets")
        super().__init__(name, help, labelnames)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.buckets = tuple(bounds)
        # labelvalues -> [per-bucket counts..., sum, count]
        self._values: dict[LabelValues, list[float]] = {}

    def labels(self, *values: Any, **kw: Any) -> _HistogramChild:
        key = self._key(values, kw)
        with self._lock:
            self._values.setdefault(key, [0.0] * (len(self.buckets) + 2))
        return _HistogramChild(self, key)

    def _observe(self, key: LabelValues, value: float) -> None:
        n = len(self.buckets)
        with self._lock:
            row = self._values.get(key)
            if row is None:
                row = self._values[key] = [0.0] * (n + 2)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    row[i] += 1
                    break
            row[n] += value
            row[n + 1] += 1

    def observe(self, value: float) -> None:
        self._observe(self._key((), {}), value)

    def time(self) -> _Timer:
        return _Timer(self.observe)

    def count(self, *values: Any) -> float:
        row = self._values.get(tuple(str(v) for v in values))
        return row[-1] if row else 0.0

    def remove(self, *values: Any) -> None:
        with self._lock:
            self._values.pop(tuple(str(v) for v in values), None)

    def samples(self) -> list[str]:
        with self._lock:
            rows = sorted((k, list(v)) for k, v in self._values.items())
        if not rows and not self.labelnames:
            rows = [((), [0.0] * (len(self.buckets) + 2))]
        out: list[str] = []
        n = len(self.buckets)
        for key, row in rows:
            cum = 0.0
            for i, bound in enumerate(self.buckets):
                cum += row[i]
                le = 'le="+Inf"' if bound == math.inf else f'le="{float(bound)!r}"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_fmt(cum)}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_fmt(row[n])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {_fmt(row[n + 1])}")
        return out


class Registry:
    """Named metric families; asking twice for the same name returns the same family."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def _get_or_create(self, cls: type[_Family], name: str, factory: Callable[[], _Family]) -> Any:
        with self._lock:
            fam = self._families.get(name)
            if fam is None:
                fam = factory()
                self._families[name] = fam
            elif type(fam) is not cls:
                raise ValueError(f"metric {name} already registered as a {fam.kind}")
            return fam

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        fam: Counter = self._get_or_create(Counter, name, lambda: Counter(name, help, labelnames))
        return fam

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        callback: GaugeCallback | None = None,
    ) -> Gauge:
        fam: Gauge = self._get_or_create(
            Gauge, name, lambda: Gauge(name, help, labelnames, callback)
        )
        if callback is not None:
            fam.set_function(callback)
        return fam

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        fam: Histogram = self._get_or_create(
            Histogram, name, lambda: Histogram(name, help, labelnames, buckets)
        )
        return fam

    def get(self, name: str) -> _Family | None:
        return self._families.get(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._families.pop(name, None)

    def render(self) -> bytes:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            families = list(self._families.values())
        lines: list[str] = []
        for fam in families:
            try:
                samples = fam.samples()
            except Exception as e:  # a broken callback must not break the whole scrape
                lines.append(f"# {fam.name} unavailable: {type(e).__name__}")
                continue
            lines.extend(fam.header())
            lines.extend(samples)
        lines.append("")
        return "\n".join(lines).encode("utf-8")


REGISTRY = Registry()


# -- workqueue metrics (controller-runtime names) --------------------------------------------


class _QueueMetrics:
    __slots__ = ("_adds", "_depth", "_latency", "_retries", "_work")

    def __init__(self, registry: Registry, name: str) -> None:
        buckets = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
        self._depth = registry.gauge(
            "workqueue_depth", "Current depth of workqueue", ("name",)
        ).labels(name)
        self._adds = registry.counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue", ("name",)
        ).labels(name)
        self._latency = registry.histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ("name",),
            buckets,
        ).labels(name)
        self._work = registry.histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            ("name",),
            buckets,
        ).labels(name)
        self._retries = registry.counter(
            "workqueue_retries_total", "Total number of retries handled by workqueue", ("name",)
        ).labels(name)

    def add(self) -> None:
        self._adds.inc()

    def depth(self, depth: int) -> None:
        self._depth.set(depth)

    def latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def work_duration(self, seconds: float) -> None:
        self._work.observe(seconds)

    def retry(self) -> None:
        self._retries.inc()


def queue_metrics(name: str, registry: Registry | None = None) -> _QueueMetrics:
    """Workqueue hooks reporting under controller-runtime's metric names, labelled by queue."""
    return _QueueMetrics(registry if registry is not None else REGISTRY, name)


# -- process metrics ----------------------------------------------------------------------------


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes() -> int:
    """Current resident set size from /proc (falls back to the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _vms_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def register_process_metrics(registry: Registry | None = None) -> None:
    """The standard process_* gauges, computed at scrape time (no background thread)."""
    reg = registry if registry is not None else REGISTRY
    start = time.time() - time.monotonic() + _process_start_monotonic()
    reg.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        callback=lambda: float(process_rss_bytes()),
    )
    reg.gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        callback=lambda: float(_vms_bytes()),
    )
    reg.gauge(
        "process_max_resident_memory_bytes",
        "Peak resident memory size in bytes.",
        callback=lambda: float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
    )
    reg.gauge("process_open_fds", "Number of open file descriptors.", callback=_open_fds)
    reg.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        callback=lambda: start,
    )
    # Rendered as a gauge: the value is monotonic but we read it, not count it.
    reg.gauge(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        callback=_cpu_seconds,
    )
    reg.gauge("python_threads", "Number of live Python threads.", callback=threading.active_count)


def _process_start_monotonic() -> float:
    # /proc/self/stat field 22 is the start time in clock ticks since boot.
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        since_boot_now = uptime
        since_boot_start = ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - (since_boot_now - since_boot_start)
    except (OSError, ValueError, IndexError):
        return time.monotonic()
