"""One look at the operator: which pod, its restart story, and its memory from every source.

The upstream reproducer read `kubectl top` (metrics-server, a scrape behind: the sample
before an OOMKill was usually missing) and counted any restart as an OOM. Here the memory
comes from the container's own memory.stat where it can be read, the kubelet's cAdvisor
metrics and stats summary through the node proxy otherwise, and OOMs are counted with the
operator's own `OOMCounter` (a kill is an advance of restartCount whose last state says
OOMKilled), so a liveness restart or a deleted pod is never reported as one.

The pod is followed, not assumed: when the Deployment's pod is replaced (deleted, evicted,
rescheduled) the sampler moves to the new one and records why the old one went; with
several replicas it samples the leader and records a change of leader.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agentic_operator.kube import KubeError
from agentic_operator.oomcount import OOMCounter, effective_restarts
from agentic_operator.resources import EVENTS, PODS
from triage.cluster import Cluster
from triage.memsources import MemoryStat, MetricsApi, NodeProxy, OperatorMetrics
from triage.memstat import merge
from triage.rundir import Memory, PodState, epoch
from triage.target import Target, alive_pod, pick_pod

#: Called with (kind, message, data) for what happened to the pods: see `rundir.Event`.
EventSink = Callable[..., None]


@dataclass(frozen=True)
class Observation:
    memory: Memory
    state: PodState
    node: str = ""
    pod_uid: str = ""
    #: CPU seconds the container has used (from the cgroup), for the settle.
    cpu_seconds: float | None = None


def container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    """The status of `container` in `pod` ({} when the kubelet has not reported it)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def state_text(status: dict[str, Any]) -> str:
    state = status.get("state") or {}
    if "running" in state:
        return "running"
    for key in ("waiting", "terminated"):
        if key in state:
            return f"{key}:{state[key].get('reason', '')}"
    return "absent"


# Enough for the last lines of a crash; a runaway log line is cut, not read whole.
_LOG_TAIL_BYTES = 16 * 1024


def last_words(message: str | None) -> str:
    """The last non-empty line of a terminated container's log tail or message, cut to 200
    characters: a crash that is not an OOM (a port already taken, a bad flag) then says what
    it was in the run's own events.
    """
    for line in reversed((message or "").splitlines()):
        # Printable characters only: a log line's colour codes must not reach the terminal.
        said = "".join(ch for ch in line if ch.isprintable()).strip()
        if said:
            return said[:200]
    return ""


class Sampler:
    """Samples one Deployment's operator container; keeps OOM and pod state across samples."""

    def __init__(
        self,
        cluster: Cluster,
        target: Target,
        *,
        on_event: EventSink | None = None,
        operator_metrics: bool = True,
    ) -> None:
        self._cluster = cluster
        namespace = self._namespace = target.namespace
        self._deployment = target.deployment
        self._container = target.container
        self._on_event = on_event or (lambda *a, **k: None)
        self._counter = OOMCounter()
        self.memstat = MemoryStat(cluster, namespace=namespace, interpreter=target.interpreter)
        self.node_proxy = NodeProxy(cluster, namespace=namespace)
        self._metrics_api = MetricsApi(cluster, namespace=namespace)
        self._operator = OperatorMetrics(cluster, namespace=namespace) if operator_metrics else None
        self.last_pod: dict[str, Any] | None = None
        self._last_choice = ""
        #: The last pod a leader lock named, and why pods that went did.
        self._leader: str | None = None
        self._gone: dict[str, str] = {}
        #: Why the next change of pod or restart is triage's own (one of them, whichever
        #: comes first: a restart in place, or the pod deleted instead).
        self._expected = ""
        #: Longest wait for kubelet stats newer than a batch (housekeeping is ~10 s).
        self.stats_wait = 20.0
        #: Longest wait for the pod status to show a restart the stats already show.
        self.status_wait = 30.0
        self._started: dict[str, str] = {}
        self._restarts: dict[str, int] = {}

    def close(self) -> None:
        if self._operator is not None:
            self._operator.close()
        self.memstat.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port_forward_pid(self) -> int | None:
        return self._operator.port_forward_pid if self._operator is not None else None

    @property
    def stream_pid(self) -> int | None:
        """The kubectl exec that reads memory.stat, while one is open (MemoryStat)."""
        return self.memstat.stream_pid

    @property
    def unavailable(self) -> dict[str, str]:
        """Sources that could not be had on this cluster, and why (for run.json)."""
        out = {
            "memory.stat": self.memstat.unavailable,
            "cadvisor": self.node_proxy.cadvisor_unavailable,
            "summary": self.node_proxy.summary_unavailable,
        }
        return {k: v for k, v in out.items() if v}

    def expect_replacement(self, why: str) -> None:
        """The next change of pod, or restart of the followed container, is triage's own
        doing (a cold start): record it as such."""
        self._expected = why

    # -- the pod ----------------------------------------------------------------------------

    def await_leader(self, *, timeout: float) -> str | None:
        """With several replicas, wait for a leader lock to name one (the baseline is the
        leader's); None, and an event, when none does within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            pod, how = pick_pod(
                self._cluster, namespace=self._namespace, deployment=self._deployment
            )
            if pod is not None and how == "leader":
                self._leader = pod["metadata"]["name"]
                self.last_pod, self._last_choice = pod, how
                return self._leader
            if time.monotonic() > deadline:
                self._on_event(
                    "no-leader",
                    f"no leader lock names one of the replicas after {timeout:.0f}s; "
                    "sampling the newest pod",
                )
                return None
            time.sleep(1)

    def _pod(self) -> dict[str, Any] | None:
        pod, how = pick_pod(self._cluster, namespace=self._namespace, deployment=self._deployment)
        old = self.last_pod
        if pod is not None:
            name = pod["metadata"]["name"]
            moved = old is not None and old["metadata"].get("uid") != pod["metadata"].get("uid")
            why = self._note_gone(old) if moved and old is not None else ""
            if how == "leader" and self._leader not in (None, name):
                previous = str(self._leader)
                reason = self._gone.get(previous, "")
                went = f" ({previous} went: {reason})" if reason else ""
                self._on_event(
                    "leader-changed",
                    f"leader moved from {previous} to {name}{went}; sampling the new leader",
                    old=previous, new=name, reason=reason,
                )  # fmt: skip
            elif moved and old is not None and not (how == "leader" and self._leader is None):
                # (The first leader elected replaces a stand-in: not an event.)
                self._replaced(old["metadata"]["name"], name, why)
            if how == "leader":
                self._leader = name
        self.last_pod = pod
        self._last_choice = how
        return pod

    def _note_gone(self, old: dict[str, Any]) -> str:
        """Why the pod sampled until now is no longer the one (empty while it still runs)."""
        old_name = old["metadata"]["name"]
        still = self._cluster.client.get_or_none(PODS.path(self._namespace, old_name))
        alive = still is not None and alive_pod(still)
        why = "" if alive else (self._expected or self._why_gone(old_name))
        self._expected = ""
        if why:
            self._gone[old_name] = why
        return why

    def _replaced(self, old_name: str, new_name: str, why: str) -> None:
        if self._last_choice == "leader":
            self._on_event(
                "leader-lost",
                f"leader {old_name} went ({why or 'replaced'}); no replica holds the lease yet, "
                f"sampling {new_name} meanwhile",
                old=old_name,
                new=new_name,
                reason=why,
            )
            return
        self._on_event(
            "pod-replaced",
            f"operator pod {old_name} went ({why or 'replaced'}); following {new_name} (not an OOM)",
            old=old_name,
            new=new_name,
            reason=why or "replaced",
        )

    def _why_gone(self, name: str) -> str:
        """Evicted, deleted, preempted... from the old pod or its events."""
        pod = self._cluster.client.get_or_none(PODS.path(self._namespace, name))
        if pod is not None:
            status = pod.get("status") or {}
            if status.get("reason"):
                return f"{status['reason']}: {status.get('message', '')}".strip(": ")
            if pod["metadata"].get("deletionTimestamp"):
                return "deleted"
        try:
            events = self._cluster.client.list(
                EVENTS.path(self._namespace),
                params={"fieldSelector": f"involvedObject.name={name}"},
            ).get("items", [])
        except KubeError:
            events = []
        for ev in sorted(events, key=lambda e: str(e.get("lastTimestamp") or ""), reverse=True):
            if ev.get("reason") in ("Evicted", "Preempting", "Killing", "TaintManagerEviction"):
                return f"{ev['reason']}: {ev.get('message', '')}".strip(": ")
        return "deleted" if pod is None else "replaced"

    def _state(self, pod: dict[str, Any], started: str | None) -> PodState:
        name = pod["metadata"]["name"]
        status = container_status(pod, self._container)
        key = pod["metadata"].get("uid") or name
        before = self._restarts.get(key)
        if (
            started is not None
            and self._started.get(key) not in (None, started)
            and int(status.get("restartCount", 0)) <= self._restarts.get(key, 0)
        ):
            # The kubelet's stats show a new container start that the pod status does not
            # show yet (its status sync lags by seconds under load): wait for it, so an OOM
            # is counted in the batch that caused it rather than the next one.
            pod, status = self._await_restart_status(pod, self._restarts.get(key, 0))
        if started is not None:
            self._started[key] = started
        restart_count = int(status.get("restartCount", 0))
        self._restarts[key] = restart_count
        if before is not None and restart_count > before and started is None:
            # Seen in the pod status first (a quick poll has no kubelet stats): the start the
            # stats remember is the ended container's, and the next stats' new start is this
            # restart, not one the status has yet to show.
            self._started.pop(key, None)
        if before is not None and restart_count > before:
            # What the kubelet says ended the container, as it said it: the OOM count rests
            # on this reason, so a run whose restarts are not all OOMs shows why.
            last = (status.get("lastState") or {}).get("terminated") or {}
            tail = self._previous_log(name)
            said = last_words(tail) or last_words(last.get("message"))
            by, self._expected = self._expected, ""
            self._on_event(
                "container-restarted",
                f"{name}/{self._container} restarted ({restart_count}"
                + (f", {by}" if by else "")
                + f"): {last.get('reason') or 'no reason given'}, exit code "
                f"{last.get('exitCode')}" + (f": {said}" if said else ""),
                pod=name, restart_count=restart_count, reason=last.get("reason"),
                exit_code=last.get("exitCode"), finished_at=last.get("finishedAt"),
                termination_message=last.get("message"), log_tail=tail, expected=bool(by),
            )  # fmt: skip
        restarts, reason = effective_restarts(
            restart_count=restart_count,
            terminated_reason=((status.get("state") or {}).get("terminated") or {}).get("reason"),
            last_terminated_reason=((status.get("lastState") or {}).get("terminated") or {}).get(
                "reason"
            ),
        )
        obs = self._counter.observe(
            (self._namespace, name, self._container), restarts, reason, uid=key
        )
        return PodState(
            pod=name,
            container=self._container,
            restart_count=restart_count,
            oom_count=self._counter.total(),
            oom_killed=obs.confirmed > 0,
            ready=bool(status.get("ready")),
            state=state_text(status),
        )

    def started_epoch(self) -> float | None:
        """When the followed pod's container last started (epoch seconds, the kubelet's clock,
        whole seconds); None while it is not running."""
        if self.last_pod is None:
            return None
        running = (container_status(self.last_pod, self._container).get("state") or {}).get(
            "running"
        ) or {}
        return epoch(running.get("startedAt"))

    def _previous_log(self, pod: str) -> str:
        """The tail of the ended container's own log, read back from the kubelet.

        Read, not taken from the termination message: the message exists only when the
        operator's Deployment asks for one (`terminationMessagePolicy`), and most do not.
        "" when the log is gone (the pod went, or the kubelet already removed that dead
        container) or not ours to read; the caller then falls back to the message.
        """
        params = {
            "container": self._container, "previous": "true", "tailLines": "20",
            "limitBytes": str(_LOG_TAIL_BYTES),
        }  # fmt: skip
        try:
            data = self._cluster.client.request_raw(
                "GET", PODS.path(self._namespace, pod, "log"), params=params, timeout=10.0,
                limit=_LOG_TAIL_BYTES + 1024,
            )  # fmt: skip
        except KubeError:
            return ""
        return data.decode("utf-8", "replace")

    def _await_restart_status(
        self, pod: dict[str, Any], known: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        path = PODS.path(self._namespace, pod["metadata"]["name"])
        deadline = time.monotonic() + self.status_wait
        status = container_status(pod, self._container)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                pod = self._cluster.client.get(path)
            except KubeError:
                break
            status = container_status(pod, self._container)
            if int(status.get("restartCount", 0)) > known:
                break
        return pod, status

    def _absent(self) -> Observation:
        return Observation(
            Memory(),
            PodState(container=self._container, oom_count=self._counter.total(), state="absent"),
        )

    # -- samples ------------------------------------------------------------------------------

    def quick(self) -> Observation:
        """Pod state and memory.stat only: what the adaptive settle polls every second."""
        pod = self._pod()
        if pod is None:
            return self._absent()
        state = self._state(pod, None)
        reading = None
        if state.state == "running":
            reading = self.memstat.reading(state.pod, self._container)
        return Observation(
            reading.memory if reading else Memory(),
            state,
            str(pod["spec"].get("nodeName") or ""),
            str(pod["metadata"].get("uid") or ""),
            reading.cpu_seconds if reading else None,
        )

    def sample(self, *, fresh_after: float | None = None, node_stats: bool = True) -> Observation:
        """Every source. With `fresh_after` (epoch) and no memory.stat, it waits (bounded)
        for kubelet stats taken after that moment: the summary lags by the kubelet's
        housekeeping interval, and a stale number would be attributed to the wrong batch.
        """
        pod = self._pod()
        if pod is None:
            return self._absent()
        name = pod["metadata"]["name"]
        node = str(pod["spec"].get("nodeName") or "")
        running = state_text(container_status(pod, self._container)) == "running"
        own = self.memstat.read(name, self._container) if running else None
        summary = cadvisor = None
        if node and node_stats:
            wait_for = None if own is not None else fresh_after
            summary = self.node_proxy.summary_fresh(
                node, name, self._container, after=wait_for, wait=self.stats_wait
            )
            cadvisor = self.node_proxy.cadvisor(node, name, self._container)
        state = self._state(pod, summary.started if summary else None)
        memory = merge(own or Memory(), cadvisor, summary.memory if summary else None)
        extra: dict[str, Any] = {
            "metrics_api_bytes": self._metrics_api.usage(name, self._container)
        }
        if self._operator is not None and state.state == "running":
            extra["operator_rss_bytes"] = self._operator.rss(pod, self._container)
        memory = replace(memory, **{k: v for k, v in extra.items() if v is not None})
        return Observation(memory, state, node, str(pod["metadata"].get("uid") or ""))
