"""Where a container's memory can be read from, each source on its own terms.

| source | how | fresh | gives |
| --- | --- | --- | --- |
| memory.stat | exec `cat` (or the target's Python) in the container | now | the whole breakdown |
| cAdvisor | kubelet /metrics/cadvisor through the node proxy | housekeeping (~10 s) | working set, RSS, cache, mapped |
| stats summary | kubelet /stats/summary through the node proxy | housekeeping | working set, RSS |
| metrics API | metrics.k8s.io (metrics-server) | scrape (~15-60 s) | usage |
| the operator's /metrics | port-forward, process_resident_memory_bytes | now | process RSS (our operator) |

memory.stat is the one source that is current and complete, so the adaptive settle reads it
and nothing else; the node-proxy sources cover images that have no program to read a file
with (distroless) and remote clusters where exec is not allowed. A source that cannot be
had is remembered as unavailable and never reported as zero.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from agentic_operator.kube import ForbiddenError, KubeError, NotFoundError
from triage.cluster import Cluster
from triage.memstat import (
    CGROUP_FILES,
    CgroupReading,
    ContainerRef,
    memory_from_cadvisor,
    parse_dump,
)
from triage.podio import ExecStream, PortForward, exec_in
from triage.quantity import parse_quantity_bytes
from triage.rundir import Memory, epoch

_RSS_GAUGE = re.compile(rb"^process_resident_memory_bytes(?:\{[^}]*\})?\s+([0-9.eE+]+)", re.M)


@dataclass(frozen=True)
class KubeletStats:
    memory: Memory
    taken: float | None = None  # when the kubelet took them (epoch seconds)
    started: str | None = None  # the container's start time: a change is a restart


class MemoryStat:
    """The container's own memory.stat (and CPU time), read by exec: current and complete."""

    def __init__(self, cluster: Cluster, *, namespace: str, interpreter: str | None) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._interpreter = interpreter
        #: (reader, cgroup files) that worked, learnt on the first success.
        self._how: tuple[int, tuple[str, str, str]] | None = None
        self._misses = 0
        #: The open stream (podio.ExecStream) and the pods where one could not be had.
        self._stream: ExecStream | None = None
        self._no_stream: set[tuple[str, str]] = set()
        self.unavailable = ""

    def _argv(self, reader: int, files: tuple[str, str, str]) -> list[str]:
        if reader == 0:
            return ["cat", *files]  # exits 1 if the CPU file is missing; the output stands
        if reader == 1:
            # A shell's own `read`: images with busybox but no `cat` applet link.
            loop = 'for f in "$@"; do while read -r l; do echo "$l"; done < "$f"; done'
            return ["sh", "-c", loop, "sh", *files]
        code = (
            "import sys\n"
            "for p in sys.argv[1:]:\n"
            "    try: sys.stdout.write(open(p).read())\n"
            "    except OSError: pass\n"
        )
        return [self._interpreter or "python3", "-c", code, *files]

    def reading(self, pod: str, container: str) -> CgroupReading | None:
        if self.unavailable:
            return None
        streamed = self._streamed(pod, container)
        if streamed is not None:
            return streamed
        readers = range(3 if self._interpreter else 2)
        tries = [self._how] if self._how else [(r, f) for f in CGROUP_FILES for r in readers]
        for reader, files in tries:
            r = exec_in(
                self._cluster, namespace=self._namespace, pod=pod, container=container,
                argv=self._argv(reader, files), timeout=15,
            )  # fmt: skip
            got = parse_dump(r.stdout.decode("ascii", "replace")) if r.stdout else None
            if got is not None:
                self._how = (reader, files)
                self._open_stream(pod, container)
                return got
        self._misses += 1
        # A container that is still starting fails too: give up only after a few tries.
        if self._how is None and self._misses >= 3:
            self.unavailable = (
                "memory.stat could not be read in the container (no cat, no Python, or exec "
                "not allowed)"
            )
        return None

    def read(self, pod: str, container: str) -> Memory | None:
        got = self.reading(pod, container)
        return None if got is None else got.memory

    @property
    def stream_pid(self) -> int | None:
        return self._stream.pid if self._stream is not None and self._stream.alive else None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    def _streamed(self, pod: str, container: str) -> CgroupReading | None:
        """A reading through the open stream, when it is this container's and still works."""
        stream = self._stream
        if stream is None:
            return None
        if stream.key != (pod, container):  # another pod now: its stream is of no use
            self.close()
            return None
        out = stream.ask()
        got = parse_dump(out.decode("ascii", "replace")) if out else None
        if got is None:  # the container restarted, or the stream broke: one-shot, then reopen
            self.close()
        return got

    def _open_stream(self, pod: str, container: str) -> None:
        """After a one-shot reading worked: a stream for the next ones, if the image has a
        shell (ExecStream). Tried once per container; a stream that worked and later broke
        (the container restarted) is opened again."""
        if self._how is None or (pod, container) in self._no_stream:
            return
        self.close()
        stream = ExecStream(self._cluster, namespace=self._namespace, pod=pod,
                            container=container, files=list(self._how[1]))  # fmt: skip
        out = stream.ask(timeout=10.0)
        if out is None or parse_dump(out.decode("ascii", "replace")) is None:
            stream.stop()
            self._no_stream.add((pod, container))
            return
        self._stream = stream


class NodeProxy:
    """The kubelet's stats summary and cAdvisor metrics, through the apiserver's node proxy."""

    def __init__(self, cluster: Cluster, *, namespace: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self.cadvisor_unavailable = ""
        self.summary_unavailable = ""

    def _stats_summary(self, node: str) -> dict[str, Any] | None:
        """The kubelet's stats summary through the node proxy; None when it cannot be read.

        Without nodes/proxy access it is never asked again: every sample would fail the same.
        """
        if self.summary_unavailable:
            return None
        try:
            return self._cluster.client.request(
                "GET", f"/api/v1/nodes/{node}/proxy/stats/summary", timeout=15
            )
        except ForbiddenError as e:
            self.summary_unavailable = f"no nodes/proxy access: {e}"
            return None
        except KubeError:
            return None

    def summary(self, node: str, pod: str, container: str) -> KubeletStats:
        doc = self._stats_summary(node)
        if doc is None:
            return KubeletStats(Memory())
        for p in doc.get("pods", []):
            ref = p.get("podRef", {})
            if ref.get("name") != pod or ref.get("namespace") != self._namespace:
                continue
            for c in p.get("containers", []):
                if c.get("name") == container:
                    mem = c.get("memory") or {}
                    ws, rss = mem.get("workingSetBytes"), mem.get("rssBytes")
                    return KubeletStats(
                        Memory(
                            working_set_bytes=None if ws is None else int(ws),
                            rss_bytes=None if rss is None else int(rss),
                            unreclaimable_bytes=None if rss is None else int(rss),
                            memory_source="summary" if rss is not None else "",
                        ),
                        taken=epoch(mem.get("time")),
                        started=c.get("startTime"),
                    )
        return KubeletStats(Memory())

    def node_fs(self, node: str) -> tuple[int, int] | None:
        """(available, capacity) bytes of the node's filesystem (where emptyDirs live)."""
        doc = self._stats_summary(node)
        if doc is None:
            return None
        fs = (doc.get("node") or {}).get("fs") or {}
        available, capacity = fs.get("availableBytes"), fs.get("capacityBytes")
        if available is None or capacity is None:
            return None
        return int(available), int(capacity)

    def summary_fresh(
        self, node: str, pod: str, container: str, *, after: float | None, wait: float
    ) -> KubeletStats:
        """Stats taken after `after` (epoch), waiting up to `wait` s: the summary lags."""
        deadline = time.monotonic() + wait
        while True:
            stats = self.summary(node, pod, container)
            if after is None or (stats.taken is not None and stats.taken >= int(after)):
                return stats
            if time.monotonic() >= deadline:
                return stats  # the freshest we could get
            time.sleep(1.0)

    def cadvisor(self, node: str, pod: str, container: str) -> Memory | None:
        if self.cadvisor_unavailable:
            return None
        try:
            status, data = self._cluster.client.send(
                "GET", f"/api/v1/nodes/{node}/proxy/metrics/cadvisor", timeout=20
            )
        except KubeError:
            return None
        if status in (401, 403, 404):
            self.cadvisor_unavailable = f"HTTP {status} from the node proxy"
            return None
        if status != 200:
            return None
        return memory_from_cadvisor(
            data.decode("utf-8", "replace"), ContainerRef(self._namespace, pod, container)
        )


class MetricsApi:
    """metrics.k8s.io, when a metrics-server is installed (asked once, then remembered)."""

    def __init__(self, cluster: Cluster, *, namespace: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._present: bool | None = None

    def usage(self, pod: str, container: str) -> int | None:
        if self._present is False:
            return None
        try:
            doc = self._cluster.client.request(
                "GET",
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{self._namespace}/pods/{pod}",
                timeout=5,
            )
        except NotFoundError:
            # 404 for the whole group means no metrics-server; for the pod, not scraped yet.
            if self._present is None:
                self._present = self._has_group()
            return None
        except KubeError:
            return None
        self._present = True
        for c in doc.get("containers", []):
            if c.get("name") == container:
                return parse_quantity_bytes(str(c["usage"]["memory"]))
        return None

    def _has_group(self) -> bool:
        try:
            self._cluster.client.request("GET", "/apis/metrics.k8s.io/v1beta1", timeout=5)
        except KubeError:
            return False
        return True


def metrics_port(pod: dict[str, Any], container: str) -> int | None:
    """The operator's metrics port: from --metrics-bind-address, else a port named `metrics`."""
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
    return None


class OperatorMetrics:
    """process_resident_memory_bytes from the operator's own /metrics, via a port-forward."""

    def __init__(self, cluster: Cluster, *, namespace: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._forward: PortForward | None = None
        self._failures = 0

    @property
    def port_forward_pid(self) -> int | None:
        return self._forward.pid if self._forward is not None else None

    def rss(self, pod: dict[str, Any], container: str) -> int | None:
        name = pod["metadata"]["name"]
        port = metrics_port(pod, container)
        if port is None or self._failures >= 3:
            return None  # not reachable here; leave the column empty, don't slow batches
        fwd = self._forward
        if fwd is not None and (not fwd.alive or fwd.pod != name or fwd.remote_port != port):
            fwd.stop()
            fwd = self._forward = None
        if fwd is None:
            fwd = PortForward(self._cluster, namespace=self._namespace, pod=name, port=port)
            if not fwd.alive:
                self._failures += 1
                return None
            self._forward = fwd
        try:
            with urllib.request.urlopen(f"{fwd.url}/metrics", timeout=5) as resp:  # noqa: S310
                body = resp.read()
        except OSError:
            # The container may be restarting; the forward is rebuilt on the next sample.
            with contextlib.suppress(Exception):
                fwd.stop()
            self._forward = None
            return None
        m = _RSS_GAUGE.search(body)
        return int(float(m.group(1))) if m else None

    def close(self) -> None:
        if self._forward is not None:
            self._forward.stop()
            self._forward = None
