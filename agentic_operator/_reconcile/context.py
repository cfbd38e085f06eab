"""What every reconciler shares: the client, the caches, the settings and the metrics.

Reconcilers read the informers' compact views to decide whether anything needs doing and
go to the apiserver only to write, so they need the same handful of collaborators; one
small object passes them around instead of a long argument list on every constructor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentic_operator._config import OperatorConfig
from agentic_operator._controller import Result
from agentic_operator._informer import Informer
from agentic_operator._kube import ApiError, KubeClient, KubeError, api_path
from agentic_operator._objects import GROUP, VERSION
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._reconcile.inactivity import ProjectTimeoutCache
from agentic_operator._runner_api import RunnerApi
from agentic_operator._session_store import SessionValue

__all__ = [
    "Context",
    "create_ignoring_exists",
    "delete_ignoring_missing",
    "get_or_none",
    "reconcile_measured",
    "sessions_path",
    "settings_path",
]


def sessions_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return api_path(
        group=GROUP,
        version=VERSION,
        plural="agenticsessions",
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


def settings_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return api_path(
        group=GROUP,
        version=VERSION,
        plural="projectsettings",
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


@dataclass(slots=True)
class Context:
    client: KubeClient
    config: OperatorConfig
    namespaces: Informer[Any]
    sessions: Informer[SessionValue]
    settings: Informer[Any]
    pods: Informer[Any]
    metrics: OperatorMetrics
    timeouts: ProjectTimeoutCache
    runner: RunnerApi

    def managed(self, namespace: str) -> bool:
        return self.namespaces.get(namespace) is not None


def reconcile_measured(
    ctx: Context,
    *,
    kind: str,
    key: str,
    reconcile: Callable[[], None],
    logger: logging.Logger,
    error_requeue: float,
) -> Result:
    """Run one level-based reconcile of `kind`, counted and timed in the operator's metrics.

    An API error is not the reconciler's to handle: it is counted, logged once, and the
    key comes back after `error_requeue` seconds; the next pass reads the world afresh.
    """
    started = time.monotonic()
    ok = True
    try:
        reconcile()
        return Result()
    except KubeError as e:
        ok = False
        ctx.metrics.session_error(kind, type(e).__name__)
        logger.warning("%s %s: %s; retrying in %.0fs", kind, key, e, error_requeue)
        return Result(requeue_after=error_requeue)
    finally:
        ctx.metrics.reconcile_done(kind, ok, time.monotonic() - started)


def get_or_none(client: KubeClient, path: str) -> dict[str, Any] | None:
    try:
        return client.get(path)
    except ApiError as e:
        if e.not_found:
            return None
        raise


def create_ignoring_exists(client: KubeClient, collection: str, body: dict[str, Any]) -> bool:
    """POST; True when created, False when an object of that name already existed."""
    try:
        client.create(collection, body)
    except ApiError as e:
        if e.already_exists:
            return False
        raise
    return True


def delete_ignoring_missing(
    client: KubeClient, path: str, *, grace_seconds: int | None = None
) -> bool:
    """DELETE with background propagation; True when something was deleted."""
    params = {"propagationPolicy": "Background"}
    if grace_seconds is not None:
        params["gracePeriodSeconds"] = str(grace_seconds)
    try:
        client.delete(path, params=params)
    except ApiError as e:
        if e.not_found:
            return False
        raise
    return True
