"""What every reconciler shares: the client, the caches, the settings and the metrics.

Reconcilers read the informers' compact views to decide whether anything needs doing and
go to the apiserver only to write, so they need the same handful of collaborators; one
small object passes them around instead of a long argument list on every constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentic_operator._config import OperatorConfig
from agentic_operator._controller import Outcome, Result, TerminalError
from agentic_operator._informer import Informer
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._reconcile.inactivity import ProjectTimeoutCache
from agentic_operator._runner_api import RunnerApi
from agentic_operator._session_store import SessionValue
from agentic_operator.kube import InvalidError, KubeClient, KubeError

__all__ = ["Context", "outcome_of"]


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


def outcome_of(reconcile: Callable[[], None]) -> Outcome:
    """Run a level-based reconcile that has no result of its own, as controller-runtime's.

    An API error is returned, not handled: the controller counts it once under its own
    name, logs it and retries the key with backoff; the next pass reads the world afresh.
    A 422 (`InvalidError`) means the manifest or status this operator wrote is wrong, which
    no retry fixes, so it is terminal.
    """
    try:
        reconcile()
    except InvalidError as e:
        return Result(), TerminalError(e)
    except KubeError as e:
        return Result(), e
    return Result(), None
