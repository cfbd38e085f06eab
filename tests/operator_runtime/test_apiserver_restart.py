"""An apiserver restart in the middle of a watch loses no event that matters.

The informer must reconnect (with backoff while the apiserver is down), resume from its
resourceVersion or re-list on 410, and end with exactly the server's state, having reported
every object created around the outage once. Restarts the shared apiserver, so it is marked
slow and kept short.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from agentic_operator._informer import Informer
from agentic_operator.kube import KubeClient
from tests.conftest import REPO, wait_until
from tests.operator_runtime.conftest import cm_path, configmap

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.disruptive]


def _view(obj: dict[str, object]) -> str:
    return str((obj.get("data") or {}).get("value"))  # type: ignore[union-attr]


def test_informer_survives_an_apiserver_restart(
    kube: KubeClient, rt_ns: str, run_label: str
) -> None:
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(kind: str, key: str, old: object, new: object) -> None:
        with lock:
            events.append((kind, key))

    inf: Informer[str] = Informer(
        kube,
        name="restart",
        path=cm_path(rt_ns),
        label_selector=f"rt-test={run_label}",
        transform=_view,
        backoff_initial=0.2,
        backoff_max=1.0,
    )
    inf.add_handler(record)
    stop = threading.Event()
    thread = inf.start(stop)
    try:
        assert inf.wait_synced(30)
        before = [f"before-{i}" for i in range(10)]
        for name in before:
            kube.create(cm_path(rt_ns), configmap(name, label=run_label, value=name))
        kube.delete(cm_path(rt_ns, "before-0"))
        subprocess.run(
            ["bash", str(REPO / "cluster" / "restart.sh"), "kube-apiserver", "2"],
            check=True,
            timeout=180,
        )
        after = [f"after-{i}" for i in range(10)]
        for name in after:
            kube.create(cm_path(rt_ns), configmap(name, label=run_label, value=name))
        kube.delete(cm_path(rt_ns, "after-0"))
        expected = {f"{rt_ns}/{n}" for n in before[1:] + after[1:]}
        wait_until(lambda: set(inf.keys()) == expected, timeout=60, what="the informer to converge")
        time.sleep(0.5)
        with lock:
            added = [k for kind, k in events if kind == "ADDED"]
            deleted = [k for kind, k in events if kind == "DELETED"]
        assert sorted(set(added)) == sorted(expected | {f"{rt_ns}/before-0", f"{rt_ns}/after-0"})
        assert len(added) == len(set(added)), "no object reported as added twice"
        assert sorted(deleted) == sorted({f"{rt_ns}/before-0", f"{rt_ns}/after-0"})
        assert inf.stats.reconnects >= 1
    finally:
        stop.set()
        thread.join(5)
