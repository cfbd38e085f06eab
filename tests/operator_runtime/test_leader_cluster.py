"""Leader election with real Leases: one leader at a time, hand-over on release and on expiry."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentic_operator._leader import LeaderElector
from agentic_operator.kube import KubeClient, api_path

FAST: dict[str, float] = {"lease_duration": 4, "renew_deadline": 3, "retry_period": 0.5}


class Candidate:
    def __init__(self, kube: KubeClient, ns: str, identity: str, **kw: Any) -> None:
        self.elector = LeaderElector(
            kube, namespace=ns, name="rt-lock", identity=identity, **{**FAST, **kw}
        )
        self.stop = threading.Event()
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.leading_stop: threading.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        def on_started(ev: threading.Event) -> None:
            self.leading_stop = ev
            self.started.set()

        self.elector.run(
            self.stop, on_started_leading=on_started, on_stopped_leading=self.stopped.set
        )

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def _candidate(kube: KubeClient, ns: str, identity: str, **kw: Any) -> Iterator[Candidate]:
    """A running Candidate, halted on the way out whatever the test asserted."""
    c = Candidate(kube, ns, identity, **kw)
    try:
        yield c
    finally:
        c.halt()


def _lease_path(ns: str) -> str:
    return api_path(
        group="coordination.k8s.io", version="v1", plural="leases", namespace=ns, name="rt-lock"
    )


def _lease(kube: KubeClient, ns: str) -> dict[str, Any]:
    return kube.get(_lease_path(ns))


@pytest.mark.cluster
def test_one_leader_and_takeover_after_release(kube: KubeClient, rt_ns: str) -> None:
    a = Candidate(kube, rt_ns, "a")
    assert a.started.wait(10)
    b = Candidate(kube, rt_ns, "b")
    try:
        # b keeps trying but never leads while a renews.
        time.sleep(FAST["lease_duration"] + 1)
        assert a.elector.is_leader()
        assert not b.elector.is_leader()
        assert not b.started.is_set()
        spec = _lease(kube, rt_ns)["spec"]
        assert spec["holderIdentity"] == "a"
        assert spec["leaseDurationSeconds"] == 4
        # a shuts down cleanly: callbacks, then release; b takes over well before expiry.
        t0 = time.monotonic()
        a.halt()
        assert a.stopped.is_set()
        assert a.leading_stop is not None and a.leading_stop.is_set()
        assert b.started.wait(FAST["lease_duration"])
        took = time.monotonic() - t0
        assert took < FAST["lease_duration"], f"takeover took {took:.1f}s: lease not released?"
        spec = _lease(kube, rt_ns)["spec"]
        assert spec["holderIdentity"] == "b"
        assert spec["leaseTransitions"] >= 1
    finally:
        a.halt()
        b.halt()
    # b released too.
    assert _lease(kube, rt_ns)["spec"].get("holderIdentity") in ("", None)


@pytest.mark.cluster
def test_takeover_after_expiry_when_leader_vanishes(kube: KubeClient, rt_ns: str) -> None:
    a = Candidate(kube, rt_ns, "a", release_on_cancel=False)
    assert a.started.wait(10)
    a.halt()  # stops renewing without releasing, like a crashed pod
    assert _lease(kube, rt_ns)["spec"]["holderIdentity"] == "a"
    t0 = time.monotonic()
    with _candidate(kube, rt_ns, "b") as b:
        assert b.started.wait(15)
        # b must have waited out the lease it observed.
        assert time.monotonic() - t0 >= FAST["lease_duration"] - 0.5


@pytest.mark.cluster
def test_losing_the_lease_stops_leading(kube: KubeClient, rt_ns: str) -> None:
    with _candidate(kube, rt_ns, "a") as a:
        assert a.started.wait(10)
        # Someone else overwrites the lease (e.g. an operator with a newer record).
        lease = _lease(kube, rt_ns)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 60
        kube.replace(_lease_path(rt_ns), lease)
        assert a.stopped.wait(10)
        assert a.leading_stop is not None and a.leading_stop.is_set()
        assert not a.elector.is_leader()
        a.thread.join(5)
        assert not a.thread.is_alive()  # run() returns once leadership is lost
        assert _lease(kube, rt_ns)["spec"]["holderIdentity"] == "intruder"


@pytest.mark.cluster
def test_stop_before_acquiring_returns_quickly(kube: KubeClient, rt_ns: str) -> None:
    with _candidate(kube, rt_ns, "a") as a:
        assert a.started.wait(10)
        b = Candidate(kube, rt_ns, "b")
        time.sleep(0.5)
        t0 = time.monotonic()
        b.halt()
        assert time.monotonic() - t0 < 2
        assert not b.stopped.is_set()  # never led, so no stop callback


@pytest.mark.unit
def test_timing_validation() -> None:
    with pytest.raises(ValueError):
        LeaderElector(
            None, namespace="n", name="l", identity="i", lease_duration=5, renew_deadline=6
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LeaderElector(None, namespace="n", name="l", identity="", lease_duration=15)  # type: ignore[arg-type]
