"""The operator's Prometheus metrics: upstream's names, plus what proves memory is bounded.

Dashboards and alerts written for the Go operator keep working because the session
metrics keep the names of upstream's README, with its `namespace` label on the session
counters. A label per namespace is also how a metrics registry grows without bound, so:

- only counters carry it (`ambient_sessions_total`, `ambient_sessions_completed_total`,
  `ambient_session_phase_transitions_total`, `ambient_session_errors_total` and the runner
  OOM counters). Histograms do not: measured with prometheus_client at 10,000 namespaces,
  three labelled counters cost 21 MiB and three labelled histograms 131 MiB, with 51 MB
  of text per scrape. The duration histograms are per operator, as PromQL sums them anyway;
- at most `max_namespaces` namespaces get series of their own; any further namespace is
  counted under `namespace="_overflow"`, so the series count has a fixed ceiling;
- a namespace that is deleted or stops being managed has its series dropped
  (`forget_namespace`), which frees its slot.

Alongside: how many objects each cache holds, queue depth, RSS read at scrape time, and
runner OOM kills counted cumulatively with the restarts that could not be attributed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from agentic_operator._metrics import CallbackGauges, family
from agentic_operator.oomcount import OOMCounter

__all__ = ["OVERFLOW_NAMESPACE", "NamespaceSlots", "OperatorMetrics"]

_DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The label value that namespaces beyond the cap are counted under.
OVERFLOW_NAMESPACE = "_overflow"
DEFAULT_MAX_NAMESPACES = 1000


class NamespaceSlots:
    """Which namespaces have series of their own (at most `cap`), and which series each has."""

    def __init__(self, cap: int) -> None:
        if cap < 0:
            raise ValueError("the namespace cap must be >= 0")
        self.cap = cap
        self._lock = threading.Lock()
        # namespace -> the (family, label values) series written for it
        self._series: dict[str, set[tuple[Counter, tuple[str, ...]]]] = {}

    def label(self, namespace: str) -> str:
        with self._lock:
            if namespace in self._series:
                return namespace
            if len(self._series) < self.cap:
                self._series[namespace] = set()
                return namespace
        return OVERFLOW_NAMESPACE

    def record(self, namespace: str, fam: Counter, values: tuple[str, ...]) -> None:
        with self._lock:
            series = self._series.get(namespace)
            if series is not None:
                series.add((fam, values))

    def forget(self, namespace: str) -> int:
        """Drop the namespace's series; returns how many there were."""
        with self._lock:
            series = self._series.pop(namespace, set())
        for fam, values in series:
            with contextlib.suppress(KeyError):
                fam.remove(*values)
        return len(series)

    def __len__(self) -> int:
        with self._lock:
            return len(self._series)


class OperatorMetrics:
    def __init__(
        self, registry: CollectorRegistry, *, max_namespaces: int = DEFAULT_MAX_NAMESPACES
    ) -> None:
        self.registry = registry
        self.namespaces = NamespaceSlots(max_namespaces)

        def per_namespace(name: str, documentation: str, *labels: str) -> Counter:
            # Namespace first: `_inc` caps it and `NamespaceSlots` drops a namespace's series.
            return family(registry, Counter, name, documentation, ("namespace", *labels))

        def histogram(
            name: str, documentation: str, *labels: str, buckets: Sequence[float] = _FAST_BUCKETS
        ) -> Histogram:
            return family(registry, Histogram, name, documentation, labels, buckets=buckets)

        self._startup = histogram(
            "ambient_session_startup_duration_seconds",
            "Time from a session's startTime until its runner is running.",
            buckets=_DURATION_BUCKETS,
        )
        self._sessions = per_namespace(
            "ambient_sessions_total", "Sessions the operator started processing (Pending)."
        )
        self._completed = per_namespace(
            "ambient_sessions_completed_total",
            "Sessions that reached a terminal phase.",
            "final_phase",
        )
        self._transitions = per_namespace(
            "ambient_session_phase_transitions_total",
            "Session phase transitions written by the operator.",
            "from_phase",
            "to_phase",
        )
        self._reconcile = histogram(
            "ambient_reconcile_duration_seconds",
            "Duration of one session reconcile, by the phase it handled and whether it succeeded.",
            "phase",
            "success",
        )
        self._pod_creation = histogram(
            "ambient_pod_creation_duration_seconds", "Duration of the runner pod create call."
        )
        self._token = histogram(
            "ambient_token_provision_duration_seconds",
            "Duration of minting a runner token and storing it in its Secret.",
        )
        self._errors = per_namespace(
            "ambient_session_errors_total",
            "Session reconcile errors by phase and error type.",
            "phase",
            "error_type",
        )
        self._oom = per_namespace(
            "ambient_runner_oom_kills_total",
            "Runner containers OOM-killed (confirmed, a lower bound), cumulative per namespace.",
        )
        self._oom_unobserved = per_namespace(
            "ambient_runner_unobserved_restarts_total",
            "Runner restarts whose reason was never observed (restartCount jumped by more than "
            "one); OOM kills are at most ambient_runner_oom_kills_total plus this.",
        )

    def _inc(self, fam: Counter, namespace: str, *rest: str, amount: float = 1.0) -> None:
        ns = self.namespaces.label(namespace)
        values = (ns, *rest)
        fam.labels(*values).inc(amount)
        if ns != OVERFLOW_NAMESPACE:
            self.namespaces.record(ns, fam, values)

    # -- session events (called by the session reconciler) ---------------------------------

    def startup(self, seconds: float) -> None:
        self._startup.observe(seconds)

    def session_started(self, namespace: str) -> None:
        self._inc(self._sessions, namespace)

    def session_completed(self, namespace: str, final_phase: str) -> None:
        self._inc(self._completed, namespace, final_phase)

    def phase_transition(self, namespace: str, from_phase: str, to_phase: str) -> None:
        self._inc(self._transitions, namespace, from_phase, to_phase)

    def reconcile_done(self, phase: str, success: bool, seconds: float) -> None:
        self._reconcile.labels(phase, "true" if success else "false").observe(seconds)

    def pod_created(self, seconds: float) -> None:
        self._pod_creation.observe(seconds)

    def token_provisioned(self, seconds: float) -> None:
        self._token.observe(seconds)

    def session_error(self, namespace: str, phase: str, error_type: str) -> None:
        self._inc(self._errors, namespace, phase, error_type)

    def oom_observed(self, namespace: str, *, confirmed: int, unobserved: int) -> None:
        """Mirror one OOMCounter observation; both counters only ever go up."""
        if confirmed:
            self._inc(self._oom, namespace, amount=confirmed)
        if unobserved:
            self._inc(self._oom_unobserved, namespace, amount=unobserved)

    def forget_namespace(self, namespace: str) -> None:
        """The namespace went away (deleted or no longer managed): drop its series."""
        self.namespaces.forget(namespace)

    # -- scrape-time views of the caches, queues and the OOM counter -------------------------

    def bind(
        self, *, informers: Sequence[Any], controllers: Sequence[Any], oom: OOMCounter
    ) -> None:
        def cache_objects() -> Iterable[tuple[Sequence[str], float]]:
            return [((inf.name,), float(len(inf))) for inf in informers]

        def cache_synced() -> Iterable[tuple[Sequence[str], float]]:
            return [((inf.name,), 1.0 if inf.has_synced() else 0.0) for inf in informers]

        def queue_delayed() -> Iterable[tuple[Sequence[str], float]]:
            return [((c.name,), float(c.queue.delayed)) for c in controllers]

        self.registry.register(
            CallbackGauges(
                [
                    (
                        "agentic_operator_cache_objects",
                        "Objects held by each informer cache.",
                        cache_objects,
                        ("informer",),
                    ),
                    (
                        "agentic_operator_cache_synced",
                        "1 once the informer's initial LIST completed.",
                        cache_synced,
                        ("informer",),
                    ),
                    (
                        "agentic_operator_workqueue_delayed",
                        "Keys waiting for a delayed requeue, per controller.",
                        queue_delayed,
                        ("name",),
                    ),
                    (
                        "agentic_operator_oom_tracked_containers",
                        "Containers whose restart bookkeeping the OOM counter holds (bounded).",
                        lambda: float(len(oom)),
                    ),
                    (
                        "agentic_operator_metrics_namespaces",
                        "Namespaces with session series of their own (bounded by the cap).",
                        lambda: float(len(self.namespaces)),
                    ),
                ]
            )
        )
