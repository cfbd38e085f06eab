"""Noticing another writer: a change to the operator Deployment that triage did not make.

A GitOps controller reverting the lowered limit, a person scaling the Deployment, a second
tool editing its env: measuring on after that would attribute their change to the load.
After triage's own patch the Deployment's generation is known; a new generation means the
spec changed under the run. The watch reports which fields changed (against what triage
applied) and which field managers wrote them since (from managedFields), so the run can stop
the load and say who did what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentic_operator.kube import KubeError
from agentic_operator.resources import DEPLOYMENTS
from triage.cluster import Cluster
from triage.specdiff import changes

#: The field manager triage's own writes are recorded under (its User-Agent's first word).
OWN_MANAGERS = frozenset({"triage"})


@dataclass(frozen=True)
class Drift:
    fields: tuple[str, ...]
    #: (manager, operation, time) of the writes after triage's own.
    managers: tuple[tuple[str, str, str], ...]

    def describe(self) -> str:
        who = ", ".join(sorted({m for m, _, _ in self.managers})) or "an unknown writer"
        what = ", ".join(self.fields[:6]) or "the spec"
        more = f" (+{len(self.fields) - 6} more)" if len(self.fields) > 6 else ""
        return f"{who} changed {what}{more}"


def _show(path: tuple[str, ...]) -> str:
    return ".".join(path).replace(".[", "[")


class DriftWatch:
    """Compares the live Deployment with what triage applied, by generation."""

    def __init__(self, cluster: Cluster, *, namespace: str, name: str) -> None:
        self._cluster = cluster
        self._path = DEPLOYMENTS.path(namespace, name)
        self._generation: int | None = None
        self._applied: dict[str, Any] | None = None
        self._since = ""

    def arm(self, deployment: dict[str, Any], applied: dict[str, Any]) -> None:
        """Start watching from `deployment` as triage's patch left it."""
        meta = deployment["metadata"]
        self._generation = int(meta.get("generation") or 0)
        self._applied = applied
        times = [str(m.get("time") or "") for m in meta.get("managedFields") or ()]
        self._since = max(times, default="")

    def check(self) -> Drift | None:
        """A Drift when the spec changed since `arm`; None when it did not (or cannot tell)."""
        if self._generation is None or self._applied is None:
            return None
        try:
            dep = self._cluster.client.get(self._path)
        except KubeError:
            return None  # an apiserver hiccup is not a change; the next batch looks again
        meta = dep["metadata"]
        if int(meta.get("generation") or 0) == self._generation:
            return None
        fields = tuple(sorted(_show(p) for p in changes(self._applied, dep["spec"])))
        managers = tuple(
            (str(m.get("manager")), str(m.get("operation")), str(m.get("time")))
            for m in meta.get("managedFields") or ()
            if str(m.get("time") or "") >= self._since
            and m.get("manager") not in OWN_MANAGERS
            # The controller manager writes status and the revision annotation at the same
            # moment as every rollout: a writer of the spec owns f:spec fields.
            and "f:spec" in (m.get("fieldsV1") or {})
        )
        return Drift(fields=fields, managers=managers)
