"""Wires informers, handlers and controllers into one operator and starts them in order.

Order matters for memory and correctness: the managed-namespace cache syncs first, so the
session, settings and pod caches can refuse objects of unmanaged namespaces from their
very first LIST instead of storing and then dropping them; controllers start only after
every cache has synced (and, with --leader-elect, after the Lease is held), so the first
reconciles see a complete picture and /readyz means what it says.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from agentic_operator._config import OperatorConfig
from agentic_operator._controller import Controller, Reconcile
from agentic_operator._informer import DictStore, Informer
from agentic_operator._objects import RUNNER_APP_LABEL
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._reconcile.context import Context
from agentic_operator._reconcile.inactivity import ProjectTimeoutCache
from agentic_operator._reconcile.namespaces import NamespaceReconciler
from agentic_operator._reconcile.projectsettings import ProjectSettingsReconciler
from agentic_operator._reconcile.sessions import SessionReconciler
from agentic_operator._reconcile.views import (
    PodView,
    SettingsView,
    namespace_transform,
    pod_transform,
    pod_view,
    settings_transform,
    settings_view,
)
from agentic_operator._runner_api import RunnerApi
from agentic_operator._session_store import (
    SessionStore,
    SessionValue,
    transform_full,
    transform_lean,
    view,
)
from agentic_operator.contract import AGENTIC_SESSIONS, PROJECT_SETTINGS
from agentic_operator.kube import KubeClient
from agentic_operator.oomcount import OOMCounter
from agentic_operator.resources import NAMESPACES, PODS

__all__ = ["Operator"]

log = logging.getLogger(__name__)

# A LIST page is parsed into Python objects several times its JSON size (a pod or a
# session with managedFields: ~20 KB each), and the allocator keeps that high-water mark:
# small pages keep the cold-start peak, and what stays resident after it, low at the price
# of a few more round trips.
LIST_PAGE_SIZE = int(os.environ.get("AGENTIC_LIST_PAGE_SIZE", "100"))
# After the first page, session pages are sized by bytes instead: 100 production-shaped
# sessions (~6 KB each with managedFields) are ~600 KB, the high-water mark the page size of
# 100 was chosen for; minimal sessions (~1 KB) then come ~500 to a page, and 100,000 of them
# list in a fifth of the round trips. Only sessions: the other caches list at the same time,
# their objects are few per namespace, and full-size pages of each at once would add up.
LIST_PAGE_BYTES = int(os.environ.get("AGENTIC_LIST_PAGE_BYTES", str(512 * 1024)))


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _became_ready(old: SettingsView, new: SettingsView) -> bool:
    """Only the status changed, and it now says every child object is in place."""
    return new.ready and old._replace(ready=True) == new


def _namespace_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


class Operator:
    """The whole operator minus process concerns (flags, signals, HTTP servers)."""

    def __init__(
        self, config: OperatorConfig, client: KubeClient, metrics: OperatorMetrics
    ) -> None:
        self.config = config
        self.client = client
        self.metrics = metrics
        lean = config.cache_mode == "lean"
        self._lean = lean
        self._bootstrapped = threading.Event()
        self._synced = threading.Event()
        self._controllers_started = threading.Event()
        # Lean: objects of unmanaged namespaces never reach a store. Full: upstream's
        # unscoped caches (all namespaces, all pods), kept to show what they cost.
        admit = self._admit_managed if lean else None

        def informer(name: str, path: str, transform: Any, **kw: Any) -> Informer[Any]:
            # Every cache lists in pages: one huge LIST response is itself a memory peak.
            return Informer(
                client, name=name, path=path, transform=transform, page_size=LIST_PAGE_SIZE, **kw
            )

        self.namespaces = informer(
            "namespaces",
            NAMESPACES.path(),
            namespace_transform if lean else _identity,
            label_selector=config.managed_selector,
        )
        self.sessions: Informer[SessionValue] = informer(
            "agenticsessions",
            AGENTIC_SESSIONS.path(),
            transform_lean if lean else transform_full,
            admit=admit,
            store=SessionStore() if lean else DictStore(),
            page_bytes=LIST_PAGE_BYTES if lean else None,
        )
        self.settings = informer(
            "projectsettings",
            PROJECT_SETTINGS.path(),
            settings_transform if lean else _identity,
            admit=admit,
        )
        self.pods = informer(
            "runner-pods",
            PODS.path(),
            pod_transform if lean else _identity,
            label_selector=f"app={RUNNER_APP_LABEL}" if lean else None,
            admit=admit,
        )
        self.oom = OOMCounter()
        self.timeouts = ProjectTimeoutCache(loader=self._project_timeout)
        self.ctx = Context(
            client=client,
            config=config,
            namespaces=self.namespaces,
            sessions=self.sessions,
            settings=self.settings,
            pods=self.pods,
            metrics=metrics,
            timeouts=self.timeouts,
            runner=RunnerApi(client),
        )
        self.session_reconciler = SessionReconciler(self.ctx)
        self.namespace_reconciler = NamespaceReconciler(
            self.ctx, scoped=(self.sessions, self.settings, self.pods) if lean else ()
        )
        self.settings_reconciler = ProjectSettingsReconciler(self.ctx)

        def controller(name: str, reconcile: Reconcile, workers: int) -> Controller:
            # A failed reconcile is retried after 5 s, as upstream's controllers requeue.
            return Controller(
                name=name,
                reconcile=reconcile,
                workers=workers,
                error_requeue=5.0,
                registry=metrics.registry,
            )

        self.session_controller = controller(
            "agenticsession", self.session_reconciler, config.max_concurrent_reconciles
        )
        self.settings_controller = controller("projectsettings", self.settings_reconciler, 2)
        self.namespace_controller = controller("namespace", self.namespace_reconciler, 2)
        self.namespaces.add_handler(self._on_namespace)
        self.sessions.add_handler(self._on_session)
        self.settings.add_handler(self._on_settings)
        self.pods.add_handler(self._on_pod)
        metrics.bind(
            informers=(self.namespaces, self.sessions, self.settings, self.pods),
            controllers=(
                self.session_controller,
                self.settings_controller,
                self.namespace_controller,
            ),
            oom=self.oom,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start_caches(self, stop: threading.Event) -> bool:
        """Start the informers in dependency order; True once all have synced."""
        self.namespaces.start(stop)
        if not self._wait(self.namespaces, stop):
            return False
        # From here on a namespace that turns up is new to the other caches: refill it.
        self._bootstrapped.set()
        t0 = time.monotonic()
        scoped = (self.sessions, self.settings, self.pods)
        for informer in scoped:
            informer.start(stop)
        for informer in scoped:
            if not self._wait(informer, stop):
                return False
        log.info(
            "caches synced in %.2fs: %d managed namespaces, %d sessions, %d settings, %d runner pods",
            time.monotonic() - t0,
            len(self.namespaces),
            len(self.sessions),
            len(self.settings),
            len(self.pods),
        )
        self._synced.set()
        return True

    def start_controllers(self, stop: threading.Event) -> None:
        for ctl in (self.namespace_controller, self.settings_controller, self.session_controller):
            ctl.run(stop)
        self._controllers_started.set()

    def shutdown(self, drain_timeout: float) -> None:
        deadline = time.monotonic() + drain_timeout
        for ctl in (self.session_controller, self.settings_controller, self.namespace_controller):
            ctl.shutdown(max(0.1, deadline - time.monotonic()))

    def synced(self) -> bool:
        return self._synced.is_set()

    def ready(self) -> bool:
        return self._synced.is_set()

    @staticmethod
    def _wait(informer: Informer[Any], stop: threading.Event) -> bool:
        while not stop.is_set():
            if informer.wait_synced(0.2):
                return True
        return False

    # -- cache scoping ---------------------------------------------------------------------------

    def _admit_managed(self, obj: dict[str, Any]) -> bool:
        return self.namespaces.get(_namespace_of(obj)) is not None

    def _project_timeout(self, namespace: str) -> int | None:
        value = self.settings.get(f"{namespace}/projectsettings")
        return None if value is None else settings_view(value).inactivity_timeout

    # -- event handlers (informer threads: enqueue only) -----------------------------------------

    def _on_namespace(self, etype: str, key: str, old: Any, new: Any) -> None:
        if etype == "DELETED":
            self.namespace_reconciler.forget(key)
            return
        if etype == "ADDED":
            if self._bootstrapped.is_set() and self._lean:
                self.namespace_reconciler.mark_new(key)
            self.namespace_controller.enqueue(key)

    def _on_session(
        self, etype: str, key: str, old: SessionValue | None, new: SessionValue | None
    ) -> None:
        if new is None:
            self.session_reconciler.forget(key)
            return
        v = view(new)
        # The initial LIST of thousands of finished sessions must not flood the queue: only
        # a session that just became terminal gets one last look (pod clean-up).
        settled = v.terminal and v.desired_phase != "Running" and not v.deleting
        if settled and (old is None or view(old).terminal):
            return
        self.session_controller.enqueue(key)

    def _on_settings(self, etype: str, key: str, old: Any, new: Any) -> None:
        ns = key.partition("/")[0]
        self.timeouts.invalidate(ns)
        if new is None:
            return
        if not self._synced.is_set() and settings_view(new).ready:
            # A restart must not re-apply hundreds of projects whose status says they are
            # done; any later change to one of them is reconciled as usual.
            return
        if old is not None and _became_ready(settings_view(old), settings_view(new)):
            # The reconcile's own status write (spec unchanged, status now says done): a second
            # pass would find everything in place at the cost of ten requests per project
            # (four creates refused as existing, their GETs, a LIST, a GET), more than the
            # project's first reconcile. A status someone else made not-ready still counts.
            return
        self.settings_controller.enqueue(key)

    def _on_pod(self, etype: str, key: str, old: Any, new: Any) -> None:
        ns, _, name = key.partition("/")
        pod: PodView = pod_view(new if new is not None else old)
        if not self._lean and (
            ((new or old).get("metadata") or {}).get("labels", {}).get("app") != RUNNER_APP_LABEL
        ):
            return
        if new is None:
            self.oom.forget(ns, name)
        else:
            for c in pod.containers:
                obs = self.oom.observe(
                    (ns, name, c.name), c.restarts, c.reason, uid=pod.uid or None
                )
                if obs.confirmed or obs.unobserved:
                    self.metrics.oom_observed(
                        ns, confirmed=obs.confirmed, unobserved=obs.unobserved
                    )
                    if obs.confirmed:
                        log.warning("runner pod %s/%s container %s was OOMKilled", ns, name, c.name)
        if not pod.session:
            return
        session_key = f"{ns}/{pod.session}"
        cached = self.sessions.get(session_key)
        if cached is None:
            # The caches sync side by side: a runner pod can arrive before its session's
            # page of the initial LIST. Controllers start only once all have synced, so the
            # reconcile will find the session (or nothing, and do nothing).
            if not self.sessions.has_synced():
                self.session_controller.enqueue(session_key)
            return
        v = view(cached)
        if v.terminal and v.desired_phase != "Running" and (new is None or pod.deleting):
            return
        # A live runner pod behind a terminal session (made just before another writer
        # finished the session, or left by an earlier operator) brings the session back:
        # its reconcile removes the pod and Service.
        self.session_controller.enqueue(session_key)
