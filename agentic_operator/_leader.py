"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

With `--leader-elect`, only one replica may reconcile; a rolling update briefly runs two.
The record is updated with optimistic concurrency (resourceVersion), expiry is judged by
our own monotonic clock from when we last saw the record change (never by comparing wall
clocks across machines), and a clean shutdown releases the lease so the successor starts
at once instead of waiting out the lease duration.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge

from agentic_operator._metrics import REGISTRY, family
from agentic_operator.kube import ApiError, KubeClient, KubeError, NotFoundError
from agentic_operator.resources import LEASES

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)

_JITTER = 1.2


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, renew and release one Lease; callbacks mark the start and end of leadership."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        release_on_cancel: bool = True,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period * _JITTER:
            raise ValueError(
                "need lease_duration > renew_deadline > retry_period * 1.2 "
                f"(got {lease_duration}, {renew_deadline}, {retry_period})"
            )
        if not identity:
            raise ValueError("identity must not be empty")
        self._client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._release_on_cancel = release_on_cancel
        self._path = LEASES.path(namespace, name)
        self._collection = LEASES.path(namespace)
        self._leading = threading.Event()
        # What we last saw in the Lease and when (monotonic) we first saw it that way.
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self._observed_duration = lease_duration
        self._m_status = family(
            REGISTRY,
            Gauge,
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master.",
            ("name",),
        ).labels(name)

    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str | None:
        """The holder we last observed (may be stale by up to a retry period)."""
        return self._observed[0] if self._observed and self._observed[0] else None

    # -- the loop ------------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        on_started_leading: Callable[[threading.Event], None],
        on_stopped_leading: Callable[[], None],
    ) -> None:
        """Block until leadership is acquired, lead until lost or `stop`, then return.

        `on_started_leading` runs on its own thread with an event set when leadership ends.
        `on_stopped_leading` runs on this thread once leadership ends (lost or stopped),
        and the lease is released only after it returns.
        """
        if not self._acquire(stop):
            return
        leading_stop = threading.Event()
        self._leading.set()
        self._m_status.set(1)
        log.info(
            "leader election: %s became leader of %s/%s", self.identity, self.namespace, self.name
        )

        def started() -> None:
            try:
                on_started_leading(leading_stop)
            except Exception:
                log.exception("on_started_leading failed")

        threading.Thread(target=started, name="leader-started", daemon=True).start()
        lost = self._renew_until_lost(stop)
        leading_stop.set()
        self._leading.clear()
        self._m_status.set(0)
        if lost:
            log.error("leader election: %s lost leadership of %s", self.identity, self.name)
        try:
            on_stopped_leading()
        except Exception:
            log.exception("on_stopped_leading failed")
        if not lost and self._release_on_cancel:
            self.release()

    def _acquire(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self._try_acquire_or_renew():
                return True
            stop.wait(self._retry_period * (1 + _JITTER * random.random()))
        return False

    def _renew_until_lost(self, stop: threading.Event) -> bool:
        """True if leadership was lost, False if `stop` ended it."""
        last_ok = time.monotonic()
        while not stop.wait(self._retry_period):
            if self._try_acquire_or_renew():
                last_ok = time.monotonic()
                continue
            if self._held_by_other():
                return True
            if time.monotonic() - last_ok >= self._renew_deadline:
                return True
        return False

    # -- one attempt -----------------------------------------------------------------------------

    def _timeout(self) -> float:
        return max(1.0, min(self._renew_deadline / 2, 5.0))

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            str(spec.get("leaseDurationSeconds") or ""),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
            self._observed_duration = float(
                spec.get("leaseDurationSeconds") or self._lease_duration
            )

    def _held_by_other(self) -> bool:
        if self._observed is None:
            return False
        holder = self._observed[0]
        return (
            bool(holder)
            and holder != self.identity
            and time.monotonic() < self._observed_at + self._observed_duration
        )

    def _try_acquire_or_renew(self) -> bool:
        now = _now_micro()
        try:
            lease = self._client.request("GET", self._path, timeout=self._timeout())
        except NotFoundError:
            return self._create(now)
        except ApiError as e:
            log.warning("leader election: reading lease: %s", e)
            return False
        except KubeError as e:
            log.warning("leader election: reading lease: %s", e)
            return False

        spec: dict[str, Any] = dict(lease.get("spec") or {})
        self._observe(spec)
        if self._held_by_other():
            return False
        holder = str(spec.get("holderIdentity") or "")
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            spec["acquireTime"] = now
            transitions += 1
        spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self._lease_duration),
                "renewTime": now,
                "leaseTransitions": transitions,
            }
        )
        lease["spec"] = spec
        try:
            updated = self._client.request("PUT", self._path, body=lease, timeout=self._timeout())
        except KubeError as e:
            # 409: someone else wrote the record first; they win this round.
            log.debug("leader election: update lease: %s", e)
            return False
        self._observe(updated.get("spec") or spec)
        return True

    def _create(self, now: str) -> bool:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._lease_duration),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        try:
            created = self._client.request(
                "POST", self._collection, body=body, timeout=self._timeout()
            )
        except KubeError as e:
            log.debug("leader election: create lease: %s", e)
            return False
        self._observe(created.get("spec") or spec)
        return True

    def release(self) -> bool:
        """Give the lease up now (only if we still hold it) so a successor need not wait."""
        try:
            lease = self._client.request("GET", self._path, timeout=self._timeout())
            spec: dict[str, Any] = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return False
            now = _now_micro()
            spec.update(
                {
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "renewTime": now,
                    "acquireTime": now,
                }
            )
            lease["spec"] = spec
            self._client.request("PUT", self._path, body=lease, timeout=self._timeout())
        except KubeError as e:
            log.warning("leader election: releasing lease: %s", e)
            return False
        log.info("leader election: %s released %s/%s", self.identity, self.namespace, self.name)
        return True
