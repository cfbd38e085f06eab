"""Putting the operator Deployment back: exactly what triage changed, nothing else.

The journal holds the Deployment as it was and the spec triage applied. The restore reads
the Deployment as it is now and takes back only triage's own changes (`specdiff.three_way`):
what another writer did during the run (a scale, an env edit, a GitOps revert of the limit)
stays. Where both touched the same field, the other writer's value is kept and reported
(the rule, documented in the README). Objects triage created beside the Deployment (the
memray launcher's ConfigMap) are deleted. Idempotent: restoring twice is harmless, and
`triage restore RUN_DIR` after a kill -9 does the same from the journal alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.kube import KubeError, NotFoundError, update_with_retry
from agentic_operator.resources import DEPLOYMENTS
from triage.cluster import Cluster
from triage.errors import RestoreError, RunFailedError
from triage.journal import Journal
from triage.patch import wait_rollout
from triage.specdiff import Conflict, changes, three_way


@dataclass
class RestoreResult:
    #: "restored" | "already-restored".
    status: str
    #: Fields both triage and another writer changed: the other writer's value was kept.
    conflicts: list[Conflict] = field(default_factory=list)
    #: Fields only another writer changed during the run (kept, as they are theirs).
    others: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        text = (
            "the Deployment already matched"
            if self.status == "already-restored"
            else "triage's changes were taken back"
        )
        if self.others:
            text += f"; kept another writer's change to {', '.join(self.others[:5])}"
        if self.conflicts:
            kept = ", ".join(f"{c.path}={c.now}" for c in self.conflicts[:5])
            text += f"; both changed {kept}: the other writer's value was kept"
        return text

    def as_meta(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "conflicts": [c.__dict__ for c in self.conflicts],
            "kept_from_others": self.others,
        }


def _show(path: tuple[str, ...]) -> str:
    return ".".join(path).replace(".[", "[")


def restore(
    cluster: Cluster, journal: Journal, *, timeout: float = 180, wait: bool = True
) -> RestoreResult:
    """Take triage's changes back from the live Deployment; see the module docstring."""
    path = DEPLOYMENTS.path(journal.namespace, journal.name)
    where = f"Deployment {journal.namespace}/{journal.name}"
    try:
        current: dict[str, Any] = cluster.client.get(path)
    except KubeError as e:
        raise RestoreError(f"cannot read {where} to restore it: {e}") from e
    if journal.uid and current["metadata"].get("uid") != journal.uid:
        raise RestoreError(
            f"{where} was deleted and recreated since the run started; not overwriting a "
            "different object"
        )
    original = journal.original_spec
    applied = journal.applied_spec
    if applied is None:
        _delete_created(cluster, journal)
        return RestoreResult("already-restored")
    result = RestoreResult("already-restored")

    def mutate(live: dict[str, Any]) -> dict[str, Any] | None:
        target, conflicts = three_way(original, applied, live["spec"])
        result.conflicts = conflicts
        mine = set(changes(original, applied))
        result.others = sorted(_show(p) for p in changes(applied, live["spec"]) if p not in mine)
        if target == live["spec"]:
            result.status = "already-restored"
            return None
        result.status = "restored"
        live["spec"] = target
        live.pop("status", None)
        return live

    journal.record("restore-begin")
    try:
        stored = update_with_retry(cluster.client, path, mutate, current=copy.deepcopy(current))
    except KubeError as e:
        raise RestoreError(f"restoring {where} failed: {e}") from e
    if stored is None:
        raise RestoreError(f"{where} disappeared during the restore")
    journal.record(
        "restore",
        result=result.status,
        conflicts=[c.__dict__ for c in result.conflicts],
        kept_from_others=result.others,
    )
    _delete_created(cluster, journal)
    if wait:
        try:
            wait_rollout(cluster, namespace=journal.namespace, name=journal.name,
                         timeout=timeout, journal=journal)  # fmt: skip
        except RunFailedError as e:
            raise RestoreError(f"spec restored, but the rollout did not finish: {e.message}") from e
    return result


def _delete_created(cluster: Cluster, journal: Journal) -> None:
    for obj in journal.created:
        try:
            cluster.client.delete_if_present(obj["path"])
        except NotFoundError:
            pass
        except KubeError as e:
            raise RestoreError(
                f"cannot delete {obj['kind']} {obj['path']} triage created: {e}"
            ) from e
