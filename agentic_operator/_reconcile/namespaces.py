"""Managed namespaces: give each its default ProjectSettings and scope the caches to it.

A namespace labelled ambient-code.io/managed=true is a project. The session, settings and
pod caches only admit objects of managed namespaces, so when a namespace becomes managed
after start-up its objects are listed in (refill) and when it stops being managed they
are dropped (evict). Both happen here, off the informer thread, because a refill is a LIST.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from agentic_operator import _objects as objs
from agentic_operator._controller import Outcome
from agentic_operator._informer import Informer
from agentic_operator._reconcile.context import Context, outcome_of
from agentic_operator.contract import PROJECT_SETTINGS
from agentic_operator.kube import ForbiddenError, KubeError

__all__ = ["NamespaceReconciler"]

log = logging.getLogger(__name__)

_SYNC_WAIT = 60.0


class NamespaceReconciler:
    def __init__(self, ctx: Context, *, scoped: Sequence[Informer[Any]]) -> None:
        self._ctx = ctx
        self._scoped = tuple(scoped)
        self._lock = threading.Lock()
        # Namespaces that became managed after the scoped caches listed: refill pending.
        self._pending_refill: set[str] = set()

    def mark_new(self, namespace: str) -> None:
        """Called by the namespace informer for a namespace that became managed at runtime."""
        with self._lock:
            self._pending_refill.add(namespace)

    def forget(self, namespace: str) -> None:
        """The namespace is no longer managed (label removed or deleted): drop its objects."""
        with self._lock:
            self._pending_refill.discard(namespace)
        for informer in self._scoped:
            informer.evict(namespace)
        self._ctx.timeouts.invalidate(namespace)
        self._ctx.metrics.forget_namespace(namespace)

    def __call__(self, namespace: str) -> Outcome:
        return outcome_of(lambda: self._reconcile(namespace))

    def _reconcile(self, namespace: str) -> None:
        if not self._ctx.managed(namespace):
            return
        with self._lock:
            refill = namespace in self._pending_refill
        if refill:
            for informer in self._scoped:
                # A refill before the initial LIST finished would be undone by its diff.
                if not informer.wait_synced(_SYNC_WAIT):
                    raise KubeError(
                        f"informer {informer.name} not synced; refill of {namespace} deferred"
                    )
                informer.refill(namespace)
            with self._lock:
                self._pending_refill.discard(namespace)
        key = f"{namespace}/{objs.PROJECT_SETTINGS_NAME}"
        if self._ctx.settings.get(key) is not None:
            return
        try:
            created = self._ctx.client.create_or_exists(
                PROJECT_SETTINGS.path(namespace), objs.default_project_settings(namespace)
            )
        except ForbiddenError as e:
            if "being terminated" in e.message:
                return  # the namespace is going away; its DELETED event follows
            raise
        if created:
            log.info("namespace %s: created default ProjectSettings", namespace)
