"""One memory sample of the operator container, from every source that can give one.

The upstream reproducer read `kubectl top`, which needs metrics-server and lags a scrape
interval behind: the sample before an OOMKill was usually missing. Here the primary source is
the kubelet's stats summary through the apiserver's node proxy (no metrics-server needed,
working set and RSS both), the metrics API is added when it is installed, and the operator's
own process RSS gauge is read from its /metrics through `kubectl port-forward`, because
a hostNetwork pod's IP is the node's non-loopback address and must not be dialled directly.

OOMs are counted with the operator's own `OOMCounter`, so a sample that misses the moment of
the kill still counts it (from the restartCount advance), and the CLI and the operator agree
on what "cumulative OOMs" means.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentic_operator.oomcount import OOMCounter, effective_restarts
from triage.deployment_patch import operator_pod
from triage.kube import ApiError, Cluster
from triage.quantity import parse_quantity_bytes

_FORWARDING = re.compile(rb"Forwarding from 127\.0\.0\.1:(\d+) ->")
_RSS_GAUGE = re.compile(rb"^process_resident_memory_bytes(?:\{[^}]*\})?\s+([0-9.eE+]+)", re.M)


def kubectl_base(cluster: Cluster) -> list[str]:
    """kubectl pointed at exactly the cluster and context the run uses."""
    args = ["kubectl"]
    if cluster.kubeconfig:
        args += ["--kubeconfig", cluster.kubeconfig]
    return [*args, "--context", cluster.context]


@dataclass(frozen=True)
class _Stats:
    working_set: int | None = None
    rss: int | None = None
    taken: float | None = None  # when the kubelet took them (epoch seconds)
    started: str | None = None  # the container's start time: a change is a restart


@dataclass(frozen=True)
class MemorySample:
    pod: str
    node: str
    container: str
    working_set_bytes: int | None
    rss_bytes: int | None
    metrics_api_bytes: int | None
    operator_rss_bytes: int | None
    restart_count: int
    oom_count: int
    unobserved_restarts: int
    oom_killed: bool  # an OOM was newly observed by this sample
    ready: bool
    state: str  # "running" | "waiting:<reason>" | "terminated:<reason>" | "absent"


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def _state_text(status: dict[str, Any]) -> str:
    state = status.get("state") or {}
    if "running" in state:
        return "running"
    for key in ("waiting", "terminated"):
        if key in state:
            return f"{key}:{state[key].get('reason', '')}"
    return "absent"


class PortForward:
    """`kubectl port-forward` to one pod port, started and stopped by PID."""

    def __init__(self, cluster: Cluster, *, namespace: str, pod: str, port: int) -> None:
        self.namespace, self.pod, self.remote_port = namespace, pod, port
        self.local_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                *kubectl_base(cluster),
                "-n",
                namespace,
                "port-forward",
                f"pod/{pod}",
                f":{port}",  # a free local port, read back from kubectl's output
                "--address",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self._proc.pid
        self._wait_ready(timeout=10)

    def _wait_ready(self, *, timeout: float) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline and self._proc.poll() is None:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                chunk = self._proc.stdout.readline()
                buf += chunk
                m = _FORWARDING.search(buf)
                if m:
                    self.local_port = int(m.group(1))
                    return
        self.stop()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.local_port is not None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def metrics_port(pod: dict[str, Any], container: str) -> int | None:
    """The operator's metrics port: from --metrics-bind-address, else the `metrics` port."""
    for c in pod["spec"].get("containers", []):
        if c.get("name") != container:
            continue
        for arg in c.get("args") or []:
            if arg.startswith("--metrics-bind-address="):
                port = arg.rsplit(":", 1)[-1]
                return int(port) if port.isdigit() and port != "0" else None
        for p in c.get("ports") or []:
            if p.get("name") == "metrics":
                return int(p["containerPort"])
        return 8080
    return None


class Sampler:
    """Samples one Deployment's operator container; keeps OOM state across samples."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        namespace: str,
        deployment: str,
        container: str | None = None,
        operator_metrics: bool = True,
    ) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._deployment = deployment
        self._container = container or deployment
        self._operator_metrics = operator_metrics
        self._counter = OOMCounter()
        self._metrics_api: bool | None = None
        self._forward: PortForward | None = None
        self._forward_failures = 0
        self.last_pod: dict[str, Any] | None = None
        #: Longest wait for kubelet stats newer than a batch (housekeeping is ~10 s).
        self.stats_wait = 20.0
        #: Longest wait for the pod status to show a restart the stats already show.
        self.status_wait = 30.0
        self._started: dict[tuple[str, str, str], str] = {}
        self._restarts: dict[tuple[str, str, str], int] = {}

    def close(self) -> None:
        if self._forward is not None:
            self._forward.stop()
            self._forward = None

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port_forward_pid(self) -> int | None:
        return self._forward.pid if self._forward is not None else None

    def sample(self, *, fresh_after: float | None = None) -> MemorySample:
        """Look at the operator now.

        With `fresh_after` (epoch seconds) it waits, bounded, for kubelet stats taken after
        that moment: the summary lags by the kubelet's housekeeping interval (about 10 s),
        and a stale number would be attributed to the wrong batch. When the stats show a new
        container start that the pod status does not show yet (the kubelet's status sync
        lags too, by seconds under load), it waits for the status, so an OOM is counted in
        the batch that caused it rather than the next one.
        """
        pod = operator_pod(self._cluster, namespace=self._namespace, deployment=self._deployment)
        if pod is None:
            self.last_pod = None
            return MemorySample(
                pod="", node="", container=self._container, working_set_bytes=None,
                rss_bytes=None, metrics_api_bytes=None, operator_rss_bytes=None,
                restart_count=0, oom_count=self._counter.total(),
                unobserved_restarts=self._counter.unobserved(), oom_killed=False,
                ready=False, state="absent",
            )  # fmt: skip
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = self._container if self._container in containers else containers[0]
        node = str(pod["spec"].get("nodeName") or "")
        stats = self._kubelet_fresh(node, name, container, fresh_after) if node else _Stats()
        status = _container_status(pod, container)
        key = (self._namespace, name, container)
        if (
            stats.started is not None
            and self._started.get(key) not in (None, stats.started)
            and int(status.get("restartCount", 0)) <= self._restarts.get(key, 0)
        ):
            pod, status = self._await_restart_status(pod, container, self._restarts.get(key, 0))
        if stats.started is not None:
            self._started[key] = stats.started
        self.last_pod = pod
        restart_count = int(status.get("restartCount", 0))
        self._restarts[key] = restart_count
        restarts, reason = effective_restarts(
            restart_count=restart_count,
            terminated_reason=((status.get("state") or {}).get("terminated") or {}).get("reason"),
            last_terminated_reason=((status.get("lastState") or {}).get("terminated") or {}).get(
                "reason"
            ),
        )
        obs = self._counter.observe(key, restarts, reason, uid=pod["metadata"].get("uid") or None)
        return MemorySample(
            pod=name,
            node=node,
            container=container,
            working_set_bytes=stats.working_set,
            rss_bytes=stats.rss,
            metrics_api_bytes=self._metrics(name, container),
            operator_rss_bytes=self._operator_rss(pod, container, status),
            restart_count=restart_count,
            oom_count=self._counter.total(),
            unobserved_restarts=self._counter.unobserved(),
            oom_killed=obs.confirmed > 0,
            ready=bool(status.get("ready")),
            state=_state_text(status),
        )

    def _await_restart_status(
        self, pod: dict[str, Any], container: str, known: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        path = f"/api/v1/namespaces/{self._namespace}/pods/{pod['metadata']['name']}"
        deadline = time.monotonic() + self.status_wait
        status = _container_status(pod, container)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                pod = self._cluster.json("GET", path)
            except ApiError:
                break
            status = _container_status(pod, container)
            if int(status.get("restartCount", 0)) > known:
                break
        return pod, status

    # -- sources ------------------------------------------------------------------------------

    def _kubelet_fresh(
        self, node: str, pod: str, container: str, fresh_after: float | None
    ) -> _Stats:
        deadline = time.monotonic() + self.stats_wait
        while True:
            stats = self._kubelet(node, pod, container)
            if fresh_after is None or (stats.taken is not None and stats.taken >= int(fresh_after)):
                return stats
            if time.monotonic() >= deadline:
                return stats  # the freshest we could get; better than nothing
            time.sleep(1.0)

    def _kubelet(self, node: str, pod: str, container: str) -> _Stats:
        try:
            summary = self._cluster.json(
                "GET", f"/api/v1/nodes/{node}/proxy/stats/summary", timeout=15
            )
        except ApiError:
            return _Stats()
        for p in summary.get("pods", []):
            ref = p.get("podRef", {})
            if ref.get("name") != pod or ref.get("namespace") != self._namespace:
                continue
            for c in p.get("containers", []):
                if c.get("name") == container:
                    mem = c.get("memory") or {}
                    ws, rss = mem.get("workingSetBytes"), mem.get("rssBytes")
                    return _Stats(
                        working_set=int(ws) if ws is not None else None,
                        rss=int(rss) if rss is not None else None,
                        taken=_epoch(mem.get("time")),
                        started=c.get("startTime"),
                    )
        return _Stats()

    def _metrics(self, pod: str, container: str) -> int | None:
        if self._metrics_api is False:
            return None
        try:
            doc = self._cluster.json(
                "GET",
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{self._namespace}/pods/{pod}",
                timeout=5,
            )
        except ApiError as e:
            # 404 for the whole group means no metrics-server: stop asking. A 404 for the
            # pod only means it has not been scraped yet.
            if e.status == 404 and self._metrics_api is None:
                self._metrics_api = self._has_metrics_api()
            return None
        self._metrics_api = True
        for c in doc.get("containers", []):
            if c.get("name") == container:
                return parse_quantity_bytes(str(c["usage"]["memory"]))
        return None

    def _has_metrics_api(self) -> bool:
        try:
            self._cluster.json("GET", "/apis/metrics.k8s.io/v1beta1", timeout=5)
        except ApiError:
            return False
        return True

    def _operator_rss(
        self, pod: dict[str, Any], container: str, status: dict[str, Any]
    ) -> int | None:
        if not self._operator_metrics or _state_text(status) != "running":
            return None
        name = pod["metadata"]["name"]
        port = metrics_port(pod, container)
        if port is None:
            return None
        fwd = self._forward
        if fwd is not None and (not fwd.alive or fwd.pod != name or fwd.remote_port != port):
            fwd.stop()
            fwd = self._forward = None
        if fwd is None:
            if self._forward_failures >= 3:
                return None  # not reachable here; leave the column empty, don't slow batches
            fwd = PortForward(self._cluster, namespace=self._namespace, pod=name, port=port)
            if not fwd.alive:
                self._forward_failures += 1
                return None
            self._forward = fwd
        try:
            with urllib.request.urlopen(  # a loopback URL we built ourselves
                f"http://127.0.0.1:{fwd.local_port}/metrics", timeout=5
            ) as resp:
                body = resp.read()
        except OSError:
            # The container may be restarting; the forward is rebuilt on the next sample.
            with contextlib.suppress(Exception):
                fwd.stop()
            self._forward = None
            return None
        m = _RSS_GAUGE.search(body)
        return int(float(m.group(1))) if m else None
