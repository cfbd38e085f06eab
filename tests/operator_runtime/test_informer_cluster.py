"""Informer behaviour on the real apiserver: pagination, watch, bookmarks, 410, reconnects."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentic_operator._informer import Informer
from agentic_operator.kube import KubeClient, api_path
from tests.conftest import wait_until
from tests.operator_runtime.conftest import cm_path, configmap
from tests.operator_runtime.tcpproxy import TcpProxy

pytestmark = pytest.mark.cluster

View = tuple[str, str | None]


def view(obj: dict[str, Any]) -> View:
    # The compact form a reconciler would keep: never the raw object.
    return obj["metadata"]["name"], (obj.get("data") or {}).get("value")


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, Any, Any]] = []

    def __call__(self, etype: str, key: str, old: Any, new: Any) -> None:
        with self.lock:
            self.events.append((etype, key, old, new))

    def take(self) -> list[tuple[str, str, Any, Any]]:
        with self.lock:
            out, self.events = self.events, []
        return out

    def of(self, etype: str) -> list[str]:
        with self.lock:
            return [k for t, k, _, _ in self.events if t == etype]


class Running:
    """Start/stop helper that asserts the informer thread exits within a second."""

    def __init__(self, inf: Informer[Any]) -> None:
        self.inf = inf
        self.stop = threading.Event()
        self.thread = inf.start(self.stop)

    def halt(self) -> float:
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(2)
        took = time.monotonic() - t0
        assert not self.thread.is_alive(), "informer did not stop"
        return took


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop.set()
        r.thread.join(2)


def _start(running: list[Running], inf: Informer[Any]) -> Running:
    r = Running(inf)
    running.append(r)
    return r


def _cm_informer(
    client: KubeClient,
    path: str,
    run_label: str,
    *,
    transform: Callable[[dict[str, Any]], View | None] = view,
    **options: Any,
) -> Informer[View]:
    """A ConfigMap informer over this test's labelled objects; `options` go to the Informer."""
    return Informer(
        client,
        name="cms",
        path=path,
        label_selector=f"rt-test={run_label}",
        transform=transform,
        **options,
    )


def _create_many(kube: KubeClient, ns: str, n: int, label: str, prefix: str = "cm") -> list[str]:
    names = [f"{prefix}-{i:03d}" for i in range(n)]
    for name in names:
        kube.create(cm_path(ns), configmap(name, label=label, value=name))
    return names


def test_paginated_list_stores_transformed(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    names = _create_many(kube, rt_ns, 23, run_label)
    rec = Recorder()
    inf = _cm_informer(kube, cm_path(rt_ns), run_label, page_size=5)
    inf.add_handler(rec)
    _start(running, inf)
    assert inf.wait_synced(30)
    assert inf.stats.list_pages == 5
    assert len(inf) == 23
    assert sorted(inf.keys()) == [f"{rt_ns}/{n}" for n in names]
    assert inf.get(f"{rt_ns}/cm-007") == ("cm-007", "cm-007")
    assert all(isinstance(inf.get(k), tuple) for k in inf.keys())  # noqa: SIM118
    assert sorted(rec.of("ADDED")) == sorted(inf.keys())
    assert inf.stats.last_resource_version


def test_pages_after_the_first_are_sized_by_bytes(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    """page_bytes: the first page has page_size objects; later ones as many as fit."""
    names = _create_many(kube, rt_ns, 60, run_label)
    probe = kube.list(cm_path(rt_ns), params={"labelSelector": f"rt-test={run_label}"})
    per_object = len(json.dumps(probe["items"][0]))
    # Room for about 20 objects a page: 5, then ~20, ~20, ~15 (never 12 pages of 5).
    inf = _cm_informer(kube, cm_path(rt_ns), run_label, page_size=5, page_bytes=per_object * 20)
    _start(running, inf)
    assert inf.wait_synced(30)
    assert len(inf) == len(names)
    assert 3 <= inf.stats.list_pages <= 6, inf.stats.list_pages


def test_watch_events_only_on_transformed_change(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    rec = Recorder()
    inf = _cm_informer(kube, api_path(version="v1", plural="configmaps"), run_label)
    inf.add_handler(rec)
    _start(running, inf)
    assert inf.wait_synced(30)
    assert len(inf) == 0
    key = f"{rt_ns}/c1"
    kube.create(cm_path(rt_ns), configmap("c1", label=run_label, value="1"))
    wait_until(lambda: rec.of("ADDED") == [key], timeout=10)
    kube.patch(cm_path(rt_ns, "c1"), {"data": {"value": "2"}})
    wait_until(lambda: rec.of("MODIFIED") == [key], timeout=10)
    # A change the transform drops (a label) must not reach the handlers.
    kube.patch(cm_path(rt_ns, "c1"), {"metadata": {"labels": {"other": "x"}}})
    kube.delete(cm_path(rt_ns, "c1"))
    wait_until(lambda: rec.of("DELETED") == [key], timeout=10)
    events = rec.take()
    assert [(t, k) for t, k, _, _ in events] == [
        ("ADDED", key),
        ("MODIFIED", key),
        ("DELETED", key),
    ]
    assert events[1][2:] == (("c1", "1"), ("c1", "2"))
    assert events[2][2:] == (("c1", "2"), None)
    assert inf.get(key) is None
    # Objects outside the label selector never arrive at all.
    kube.create(cm_path(rt_ns), configmap("c2", label="someone-else"))
    time.sleep(0.5)
    assert rec.take() == []


def test_admit_and_transform_none(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    def admit(obj: dict[str, Any]) -> bool:
        return bool(obj["metadata"].get("labels", {}).get("keep") == "yes")

    def transform(obj: dict[str, Any]) -> View | None:
        v = view(obj)
        return None if v[1] == "skip" else v

    rec = Recorder()
    inf = _cm_informer(kube, cm_path(rt_ns), run_label, transform=transform, admit=admit)
    inf.add_handler(rec)
    kube.create(cm_path(rt_ns), configmap("in", label=run_label, keep="yes"))
    kube.create(cm_path(rt_ns), configmap("out", label=run_label, keep="no"))
    kube.create(cm_path(rt_ns), configmap("skipped", label=run_label, value="skip", keep="yes"))
    _start(running, inf)
    assert inf.wait_synced(30)
    assert inf.keys() == [f"{rt_ns}/in"]
    rec.take()
    # No longer admitted -> treated as a delete.
    kube.patch(cm_path(rt_ns, "in"), {"metadata": {"labels": {"keep": "no"}}})
    wait_until(lambda: rec.of("DELETED") == [f"{rt_ns}/in"], timeout=10)
    # Admitted now -> added.
    kube.patch(cm_path(rt_ns, "out"), {"metadata": {"labels": {"keep": "yes"}}})
    wait_until(lambda: rec.of("ADDED") == [f"{rt_ns}/out"], timeout=10)
    # transform -> None on a stored object -> delete.
    kube.patch(cm_path(rt_ns, "out"), {"data": {"value": "skip"}})
    wait_until(lambda: f"{rt_ns}/out" in rec.of("DELETED"), timeout=10)
    assert len(inf) == 0


def test_bookmarks_advance_resource_version(
    kube: KubeClient, rt_ns: str, rt_ns2: str, run_label: str, running: list[Running]
) -> None:
    inf = _cm_informer(kube, cm_path(rt_ns), run_label, watch_timeout=3)
    _start(running, inf)
    assert inf.wait_synced(30)
    list_rv = int(inf.resource_version)
    stop_churn = threading.Event()

    def churn() -> None:
        i = 0
        while not stop_churn.is_set():
            kube.create(cm_path(rt_ns2), configmap(f"n{i}", label=run_label))
            i += 1
            stop_churn.wait(0.5)

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        # The v1.20 watch cache sends a bookmark shortly before the watch times out.
        wait_until(lambda: inf.stats.bookmarks >= 1, timeout=20, what="a bookmark")
    finally:
        stop_churn.set()
        t.join(5)
    assert int(inf.resource_version) > list_rv
    assert inf.stats.events == 0  # nothing happened in our namespace
    assert inf.stats.relists == 0


def _snapshot_events(rec: Recorder) -> set[tuple[str, str]]:
    return {(t, k.split("/")[1]) for t, k, _, _ in rec.take()}


def _synced_then_halted(
    kube: KubeClient, ns: str, run_label: str, running: list[Running], n: int, **options: Any
) -> tuple[Informer[View], Recorder]:
    """An informer that listed `n` ConfigMaps (cm-000...) and stopped; no events recorded yet."""
    _create_many(kube, ns, n, run_label)
    rec = Recorder()
    inf = _cm_informer(kube, cm_path(ns), run_label, **options)
    inf.add_handler(rec)
    r = _start(running, inf)
    assert inf.wait_synced(30)
    assert r.halt() < 1.0
    rec.take()
    return inf, rec


#: The events an informer owes for `_change_while_halted` once it runs again.
CHANGED_WHILE_HALTED = {("DELETED", "cm-000"), ("MODIFIED", "cm-001"), ("ADDED", "cm-new")}


def _change_while_halted(kube: KubeClient, ns: str, run_label: str) -> None:
    kube.delete(cm_path(ns, "cm-000"))
    kube.patch(cm_path(ns, "cm-001"), {"data": {"value": "changed"}})
    kube.create(cm_path(ns), configmap("cm-new", label=run_label))


def test_restart_resumes_from_resource_version(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    inf, rec = _synced_then_halted(kube, rt_ns, run_label, running, 3)
    _change_while_halted(kube, rt_ns, run_label)
    _start(running, inf)
    wait_until(lambda: len(rec.events) >= 3, timeout=15)
    time.sleep(0.3)
    assert _snapshot_events(rec) == CHANGED_WHILE_HALTED
    assert inf.stats.lists == 1  # resumed by watching, no re-list
    assert inf.stats.relists == 0


def test_gone_forces_relist_that_diffs(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    inf, rec = _synced_then_halted(kube, rt_ns, run_label, running, 4, page_size=2)
    _change_while_halted(kube, rt_ns, run_label)
    kube.patch(cm_path(rt_ns, "cm-002"), {"metadata": {"labels": {"noise": "1"}}})
    # Pretend we were away far longer than the watch cache remembers: the real apiserver
    # answers this resourceVersion with 410 Gone.
    inf._rv = "1"
    _start(running, inf)
    wait_until(lambda: inf.stats.relists == 1 and inf.stats.lists == 2, timeout=15)
    time.sleep(0.3)
    # Only real differences are emitted: cm-002 (label only) and cm-003 are unchanged.
    assert _snapshot_events(rec) == CHANGED_WHILE_HALTED
    names = sorted(k.split("/")[1] for k in inf.keys())  # noqa: SIM118
    assert names == ["cm-001", "cm-002", "cm-003", "cm-new"]
    # And the watch afterwards works from the fresh resourceVersion.
    kube.create(cm_path(rt_ns), configmap("cm-after", label=run_label))
    wait_until(lambda: inf.get(f"{rt_ns}/cm-after") is not None, timeout=10)


@pytest.fixture
def proxied(kube: KubeClient) -> Iterator[tuple[KubeClient, TcpProxy]]:
    u = urlsplit(kube.config.server)
    proxy = TcpProxy((u.hostname or "127.0.0.1", u.port or 443))
    client = KubeClient(replace(kube.config, server=f"https://127.0.0.1:{proxy.port}"))
    yield client, proxy
    client.close()
    proxy.close()


def test_cut_connections_lose_no_events(
    kube: KubeClient,
    rt_ns: str,
    run_label: str,
    running: list[Running],
    proxied: tuple[KubeClient, TcpProxy],
) -> None:
    client, proxy = proxied
    rec = Recorder()
    inf = _cm_informer(client, cm_path(rt_ns), run_label, backoff_initial=0.1, backoff_max=0.5)
    inf.add_handler(rec)
    r = _start(running, inf)
    assert inf.wait_synced(30)
    names = [f"x-{i:03d}" for i in range(60)]
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i, name in enumerate(names):
                kube.create(cm_path(rt_ns), configmap(name, label=run_label, value=name))
                if i == 30:
                    # An outage: the "apiserver" refuses connections for a while.
                    proxy.stop_listening()
                    proxy.cut()
                    time.sleep(1.0)
                    proxy.start()
                time.sleep(0.02)
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    cuts = 0
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.15)
        cuts += proxy.cut()
    w.join(10)
    assert not errors
    keys = {f"{rt_ns}/{n}" for n in names}
    wait_until(lambda: keys <= set(inf.keys()), timeout=20, what="all objects after reconnects")
    time.sleep(0.3)
    added = rec.of("ADDED")
    assert sorted(added) == sorted(keys), "every create seen exactly once"
    assert cuts >= 3
    assert inf.stats.reconnects >= 2
    # Every reconnect resumed from the last resourceVersion: no re-list was needed.
    assert inf.stats.lists == 1
    assert r.halt() < 1.0


def test_stop_is_prompt_even_while_backing_off(
    rt_ns: str, run_label: str, running: list[Running], proxied: tuple[KubeClient, TcpProxy]
) -> None:
    client, proxy = proxied
    inf = _cm_informer(client, cm_path(rt_ns), run_label, backoff_initial=5, backoff_max=30)
    r = _start(running, inf)
    assert inf.wait_synced(30)
    time.sleep(0.3)  # now blocked in a watch read
    assert r.halt() < 1.0
    proxy.stop_listening()
    proxy.cut()
    r2 = _start(running, inf)
    wait_until(lambda: inf.stats.reconnects >= 1, timeout=10)  # now sleeping in backoff
    assert r2.halt() < 1.0


def test_refill_and_evict(
    kube: KubeClient, rt_ns: str, rt_ns2: str, run_label: str, running: list[Running]
) -> None:
    managed = {rt_ns}
    rec = Recorder()
    inf = _cm_informer(
        kube,
        api_path(version="v1", plural="configmaps"),
        run_label,
        admit=lambda o: o["metadata"]["namespace"] in managed,
    )
    inf.add_handler(rec)
    _create_many(kube, rt_ns, 3, run_label, prefix="a")
    _create_many(kube, rt_ns2, 4, run_label, prefix="b")
    _start(running, inf)
    assert inf.wait_synced(30)
    assert {k.split("/")[0] for k in inf.keys()} == {rt_ns}  # noqa: SIM118
    rec.take()
    # rt_ns2 becomes managed: admit flips first, then the namespace is re-listed.
    managed.add(rt_ns2)
    inf.refill(rt_ns2)
    assert sorted(rec.of("ADDED")) == sorted(f"{rt_ns2}/b-{i:03d}" for i in range(4))
    inf.refill(rt_ns2)  # idempotent: nothing new
    assert len(rec.take()) == 4
    # rt_ns stops being managed: its keys go, each with a DELETED event.
    managed.discard(rt_ns)
    inf.evict(rt_ns)
    assert sorted(rec.of("DELETED")) == sorted(f"{rt_ns}/a-{i:03d}" for i in range(3))
    assert {k.split("/")[0] for k in inf.keys()} == {rt_ns2}  # noqa: SIM118
    rec.take()
    kube.create(cm_path(rt_ns), configmap("late", label=run_label))
    kube.create(cm_path(rt_ns2), configmap("late", label=run_label))
    wait_until(lambda: inf.get(f"{rt_ns2}/late") is not None, timeout=10)
    assert inf.get(f"{rt_ns}/late") is None


def test_failing_handler_does_not_stop_informer(
    kube: KubeClient, rt_ns: str, run_label: str, running: list[Running]
) -> None:
    rec = Recorder()

    def bad(*_: Any) -> None:
        raise RuntimeError("handler bug")

    inf = _cm_informer(kube, cm_path(rt_ns), run_label)
    inf.add_handler(bad)
    inf.add_handler(rec)
    _start(running, inf)
    assert inf.wait_synced(30)
    kube.create(cm_path(rt_ns), configmap("z", label=run_label))
    wait_until(lambda: rec.of("ADDED") == [f"{rt_ns}/z"], timeout=10)
