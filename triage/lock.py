"""One run at a time per operator Deployment: a lock held on the cluster, not on a disk.

Two engineers (or two CI jobs) reproducing against the same operator would each journal the
other's lowered limit as "the original" and restore it. A file lock on one laptop cannot see
the other laptop, so the lock is a coordination.k8s.io Lease next to the Deployment, named
after it, whose holder is the run id and whose annotations say who and when. A running
triage renews it; one whose renewals stopped (the run was killed with -9) is recognised as
stale, and `triage restore RUN_DIR` releases it once the Deployment is back. It is released
as soon as the Deployment is restored: cleanup still going on in the background does not
hold it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentic_operator.kube import (
    AlreadyExistsError,
    ConflictError,
    KubeError,
    NotFoundError,
)
from agentic_operator.resources import LEASES
from triage.cluster import Cluster
from triage.errors import LockHeldError, PreflightError
from triage.rundir import epoch

#: A holder that has not renewed for this long is stale (TRIAGE_LOCK_SECONDS overrides it,
#: for tests that must see a killed run's lock go stale in seconds).
LEASE_SECONDS = int(os.environ.get("TRIAGE_LOCK_SECONDS", "60"))
RENEW_EVERY = LEASE_SECONDS / 4
ANNOTATION = "triage.ambient-code.io/"


def lock_name(deployment: str) -> str:
    return f"triage-lock-{deployment}"[:253]


def _micro(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Holder:
    run_id: str
    started_at: str
    host: str
    run_dir: str
    renewed: float | None
    #: The lease duration the holder declared: its own promise of how often it renews.
    duration: float = LEASE_SECONDS

    @property
    def stale(self) -> bool:
        return self.renewed is None or time.time() - self.renewed > self.duration

    def describe(self) -> str:
        age = (
            "" if self.renewed is None else f", last renewed {time.time() - self.renewed:.0f}s ago"
        )
        return f"run {self.run_id} (started {self.started_at} on {self.host}{age})"


def _holder(lease: dict[str, Any]) -> Holder:
    ann = (lease.get("metadata") or {}).get("annotations") or {}
    spec = lease.get("spec") or {}
    return Holder(
        run_id=str(spec.get("holderIdentity") or ""),
        started_at=str(ann.get(f"{ANNOTATION}started-at") or "?"),
        host=str(ann.get(f"{ANNOTATION}host") or "?"),
        run_dir=str(ann.get(f"{ANNOTATION}run-dir") or ""),
        renewed=epoch(spec.get("renewTime")),
        duration=float(spec.get("leaseDurationSeconds") or LEASE_SECONDS),
    )


class RunLock:
    """The lock of one run on one Deployment; `acquire`, renewed in the background, `release`."""

    def __init__(self, cluster: Cluster, *, namespace: str, deployment: str, run_id: str) -> None:
        self._client = cluster.client
        self.namespace, self.deployment, self.run_id = namespace, deployment, run_id
        self.name = lock_name(deployment)
        self._path = LEASES.path(namespace, self.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def holder(self) -> Holder | None:
        lease = self._client.get_or_none(self._path)
        return None if lease is None else _holder(lease)

    def check(self) -> None:
        """Raise LockHeldError if another run holds the lock (the dry run's check)."""
        holder = self.holder()
        if holder is not None and holder.run_id != self.run_id:
            raise _held(holder, self)

    def acquire(self, *, run_dir: str) -> None:
        now = time.time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "triage"},
                "annotations": {
                    f"{ANNOTATION}started-at": _micro(now)[:19] + "Z",
                    f"{ANNOTATION}host": socket.gethostname(),
                    f"{ANNOTATION}run-dir": run_dir,
                    f"{ANNOTATION}deployment": self.deployment,
                },
            },
            "spec": {
                "holderIdentity": self.run_id,
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": _micro(now),
                "renewTime": _micro(now),
            },
        }
        try:
            self._client.create(LEASES.path(self.namespace), body)
        except AlreadyExistsError:
            holder = self.holder()
            if holder is None:
                return self.acquire(run_dir=run_dir)  # released in between
            raise _held(holder, self) from None
        except KubeError as e:
            raise PreflightError(
                f"cannot create the run lock Lease {self.namespace}/{self.name}: {e}"
            ) from e
        self.held = True
        self._thread = threading.Thread(target=self._renew_loop, name="triage-lock", daemon=True)
        self._thread.start()
        return None

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                lease = self._client.get(self._path)
                if (lease.get("spec") or {}).get("holderIdentity") != self.run_id:
                    return  # taken over after `triage restore` released it: not ours
                lease["spec"]["renewTime"] = _micro(time.time())
                self._client.replace(self._path, lease)
            except (ConflictError, KubeError):
                continue  # the next renewal tries again; staleness needs a whole minute

    def release(self) -> bool:
        """Delete the Lease if this run holds it; True when it did."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return release(self._client, self._path, self.run_id) if self.held else False


def release(client: Any, path: str, run_id: str) -> bool:
    """Delete the lock at `path` only if `run_id` holds it (a precondition on its uid)."""
    lease = client.get_or_none(path)
    if lease is None or (lease.get("spec") or {}).get("holderIdentity") != run_id:
        return False
    uid = lease["metadata"]["uid"]
    try:
        client.delete(path, body={"preconditions": {"uid": uid}})
    except (NotFoundError, ConflictError):
        return False
    return True


def _held(holder: Holder, lock: RunLock) -> LockHeldError:
    where = f"Deployment {lock.namespace}/{lock.deployment}"
    if holder.stale:
        fix = (
            f"`triage restore {holder.run_dir}` puts the Deployment back and releases it"
            if holder.run_dir
            else f"restore that run, then delete Lease {lock.namespace}/{lock.name}"
        )
        return LockHeldError(
            f"{where} is locked by {holder.describe()}, which stopped renewing its lock (killed?): "
            f"{fix}"
        )
    return LockHeldError(
        f"{where} is locked by {holder.describe()}; wait for it to finish, or pass another "
        "--operator-deployment"
    )
