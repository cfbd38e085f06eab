"""Runtime metrics under controller-runtime's names, exposed through prometheus_client.

Dashboards written for controller-runtime operators read `controller_runtime_reconcile_*`,
`workqueue_*`, `leader_election_master_status` and the standard `process_*` series, so the
operator reports those names with those types. prometheus_client does the bookkeeping and
the text exposition; it costs 1.2 to 2.0 MiB of idle RSS, which the 45 MiB budget has room
for, and it removes a hand-written exposition format that has to be kept correct by hand.

Families are created once per registry (`family`): several controllers, queues or leader
electors in one process share one family and each takes its own labelled child, as
controller-runtime's global registry does. `_created` series are switched off: they double
the series count and nothing here reads them.
"""

from __future__ import annotations

import os
import resource
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "REGISTRY",
    "CallbackGauges",
    "QueueMetrics",
    "family",
    "new_registry",
    "process_rss_bytes",
    "render",
]

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

M = TypeVar("M", Counter, Gauge, Histogram)

_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_families_lock = threading.Lock()


def new_registry() -> CollectorRegistry:
    """An empty registry with the process collectors every operator registry carries."""
    reg = CollectorRegistry()
    prometheus_client.ProcessCollector(registry=reg)
    reg.register(
        CallbackGauges(
            [
                (
                    "process_max_resident_memory_bytes",
                    "Peak resident memory size in bytes.",
                    lambda: float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
                ),
                ("python_threads", "Number of live Python threads.", threading.active_count),
            ]
        )
    )
    return reg


def family(
    registry: CollectorRegistry,
    cls: type[M],
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    **kwargs: Any,
) -> M:
    """The family `name` in `registry`, created on first use; same name, same family."""
    with _families_lock:
        known = _families.setdefault(registry, {})
        fam = known.get(name)
        if fam is None:
            fam = cls(name, documentation, labelnames, registry=registry, **kwargs)
            known[name] = fam
        elif not isinstance(fam, cls):
            raise ValueError(f"metric {name} already registered as {type(fam).__name__}")
        return fam


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (0.0.4) of everything in `registry`."""
    return prometheus_client.generate_latest(registry)


GaugeSource = Callable[[], float | Iterable[tuple[Sequence[str], float]]]


class CallbackGauges(Collector):
    """Gauges read at scrape time (cache sizes, RSS): no thread keeps them current.

    Each entry is (name, help, source) or (name, help, source, labelnames); an unlabelled
    source returns a float, a labelled one (label values, value) pairs.
    """

    def __init__(self, gauges: Sequence[tuple[Any, ...]]) -> None:
        self._gauges = list(gauges)

    def describe(self) -> Iterable[Metric]:
        for entry in self._gauges:
            name, doc = entry[0], entry[1]
            labels = entry[3] if len(entry) > 3 else ()
            yield GaugeMetricFamily(name, doc, labels=list(labels) or None)

    def collect(self) -> Iterable[Metric]:
        for entry in self._gauges:
            name, doc, source = entry[0], entry[1], entry[2]
            labels = list(entry[3]) if len(entry) > 3 else []
            value = source()
            if isinstance(value, int | float):
                yield GaugeMetricFamily(name, doc, value=float(value))
                continue
            fam = GaugeMetricFamily(name, doc, labels=labels)
            for labelvalues, v in value:
                fam.add_metric([str(x) for x in labelvalues], float(v))
            yield fam


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes() -> int:
    """Current resident set size from /proc (the peak from getrusage where /proc is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- workqueue metrics (client-go / controller-runtime names) ---------------------------------

_QUEUE_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


class QueueMetrics:
    """The hooks a WorkQueue reports into, labelled by the queue's name."""

    __slots__ = ("_adds", "_depth", "_latency", "_retries", "_work")

    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        def series(cls: type[M], metric: str, documentation: str, **kwargs: Any) -> M:
            return family(registry, cls, metric, documentation, ("name",), **kwargs).labels(name)

        self._depth = series(Gauge, "workqueue_depth", "Current depth of workqueue")
        self._adds = series(
            Counter, "workqueue_adds_total", "Total number of adds handled by workqueue"
        )
        self._latency = series(
            Histogram,
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            buckets=_QUEUE_BUCKETS,
        )
        self._work = series(
            Histogram,
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            buckets=_QUEUE_BUCKETS,
        )
        self._retries = series(
            Counter, "workqueue_retries_total", "Total number of retries handled by workqueue"
        )

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


#: The process-wide registry `python -m agentic_operator` serves on /metrics.
REGISTRY = new_registry()
