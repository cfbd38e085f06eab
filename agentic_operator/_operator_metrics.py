"""The operator's Prometheus metrics: upstream's names, plus what proves memory is bounded.

Dashboards and alerts written for the Go operator keep working because the session
metrics keep upstream's names and labels. The additions answer the question this project
exists for: how many objects each cache holds, how deep the queues are, the RSS read at
scrape time, and runner OOM kills counted cumulatively (`ambient_runner_oom_kills_total`)
with the restarts that could not be attributed exported next to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agentic_operator._metrics import Registry, register_process_metrics
from agentic_operator.oomcount import OOMCounter

__all__ = ["OperatorMetrics"]

_DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        r = registry
        self._startup = r.histogram(
            "ambient_session_startup_duration_seconds",
            "Time from a session's startTime until its runner is running.",
            buckets=_DURATION_BUCKETS,
        )
        self._sessions = r.counter(
            "ambient_sessions_total", "Sessions the operator started processing (Pending)."
        )
        self._completed = r.counter(
            "ambient_sessions_completed_total",
            "Sessions that reached a terminal phase.",
            ("final_phase",),
        )
        self._transitions = r.counter(
            "ambient_session_phase_transitions_total",
            "Session phase transitions written by the operator.",
            ("from_phase", "to_phase"),
        )
        self._reconcile = r.histogram(
            "ambient_reconcile_duration_seconds",
            "Duration of one reconcile, by the phase it handled and whether it succeeded.",
            ("phase", "success"),
            _FAST_BUCKETS,
        )
        self._pod_creation = r.histogram(
            "ambient_pod_creation_duration_seconds",
            "Duration of the runner pod create call.",
            buckets=_FAST_BUCKETS,
        )
        self._token = r.histogram(
            "ambient_token_provision_duration_seconds",
            "Duration of minting a runner token and storing it in its Secret.",
            buckets=_FAST_BUCKETS,
        )
        self._oom = r.counter(
            "ambient_runner_oom_kills_total",
            "Runner containers OOM-killed (confirmed, a lower bound), cumulative per namespace.",
            ("namespace",),
        )
        self._oom_unobserved = r.counter(
            "ambient_runner_unobserved_restarts_total",
            "Runner restarts whose reason was never observed (restartCount jumped by more than "
            "one); OOM kills are at most ambient_runner_oom_kills_total plus this.",
            ("namespace",),
        )
        self._errors = r.counter(
            "ambient_session_errors_total",
            "Reconcile errors by phase and error type.",
            ("phase", "error_type"),
        )
        register_process_metrics(r)

    # -- session events (called by the reconcilers) ----------------------------------------

    def startup(self, seconds: float) -> None:
        self._startup.observe(seconds)

    def session_started(self) -> None:
        self._sessions.inc()

    def session_completed(self, final_phase: str) -> None:
        self._completed.labels(final_phase).inc()

    def phase_transition(self, from_phase: str, to_phase: str) -> None:
        self._transitions.labels(from_phase, to_phase).inc()

    def reconcile_done(self, phase: str, success: bool, seconds: float) -> None:
        self._reconcile.labels(phase, "true" if success else "false").observe(seconds)

    def pod_created(self, seconds: float) -> None:
        self._pod_creation.observe(seconds)

    def token_provisioned(self, seconds: float) -> None:
        self._token.observe(seconds)

    def session_error(self, phase: str, error_type: str) -> None:
        self._errors.labels(phase, error_type).inc()

    def oom_observed(self, namespace: str, *, confirmed: int, unobserved: int) -> None:
        """Mirror one OOMCounter observation; both counters only ever go up."""
        if confirmed:
            self._oom.labels(namespace).inc(confirmed)
        if unobserved:
            self._oom_unobserved.labels(namespace).inc(unobserved)

    # -- scrape-time views of the caches, queues and the OOM counter -------------------------

    def bind(
        self, *, informers: Sequence[Any], controllers: Sequence[Any], oom: OOMCounter
    ) -> None:
        r = self.registry

        def cache_objects() -> Iterable[tuple[Sequence[str], float]]:
            return [((inf.name,), float(len(inf))) for inf in informers]

        def cache_synced() -> Iterable[tuple[Sequence[str], float]]:
            return [((inf.name,), 1.0 if inf.has_synced() else 0.0) for inf in informers]

        def queue_delayed() -> Iterable[tuple[Sequence[str], float]]:
            return [((c.name,), float(c.queue.delayed)) for c in controllers]

        r.gauge(
            "agentic_operator_cache_objects",
            "Objects held by each informer cache.",
            ("informer",),
            callback=cache_objects,
        )
        r.gauge(
            "agentic_operator_cache_synced",
            "1 once the informer's initial LIST completed.",
            ("informer",),
            callback=cache_synced,
        )
        r.gauge(
            "agentic_operator_workqueue_delayed",
            "Keys waiting for a delayed requeue, per controller.",
            ("name",),
            callback=queue_delayed,
        )
        r.gauge(
            "agentic_operator_oom_tracked_containers",
            "Containers whose restart bookkeeping the OOM counter holds (bounded).",
            callback=lambda: float(len(oom)),
        )
