"""triage.sampling against the real operator pod: every memory source, the pod's restart
story, and the port-forward to its /metrics tracked by PID."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentic_operator.kube import KubeClient
from agentic_operator.resources import DEPLOYMENTS
from tests.conftest import KUBECONFIG, wait_until
from tests.operator.conftest import RUNNER_IMAGE
from triage.cluster import connect
from triage.memsources import metrics_port
from triage.rundir import epoch
from triage.sampling import Sampler, last_words
from triage.target import Target


@pytest.mark.unit
def test_metrics_port_comes_from_the_bind_flag_or_the_named_port() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "op", "args": ["--metrics-bind-address=127.0.0.1:18080"]},
                {"name": "side", "ports": [{"name": "metrics", "containerPort": 9100}]},
                {"name": "off", "args": ["--metrics-bind-address=0"]},
            ]
        }
    }
    assert metrics_port(pod, "op") == 18080
    assert metrics_port(pod, "side") == 9100
    assert metrics_port(pod, "off") is None
    assert metrics_port(pod, "missing") is None
    assert epoch("2026-01-01T00:00:00Z") == 1767225600.0
    assert epoch(None) is None and epoch("garbage") is None
    assert last_words("starting\nbind: address in use\n\n") == "bind: address in use"
    assert last_words(None) == "" and last_words("x" * 300) == "x" * 200
    assert last_words("\x1b[31mfatal: [/x]\x1b[0m\n") == "[31mfatal: [/x][0m"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.cluster
@pytest.mark.node
def test_samples_a_real_operator_pod(operator_namespace: str) -> None:
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    target = Target(operator_namespace, "agentic-operator", "agentic-operator")
    with Sampler(cluster, target) as sampler:
        first = sampler.sample()
        m, st = first.memory, first.state
        assert st.pod.startswith("agentic-operator-") and first.node
        assert st.state == "running" and st.ready
        # The container's own memory.stat (cgroup v1 here): current and complete.
        assert m.memory_source == "memory.stat v1"
        assert m.anon_bytes and m.anon_bytes > 5 * 2**20
        assert m.unreclaimable_bytes == m.anon_bytes + (m.shmem_bytes or 0)
        assert m.cache_bytes is not None and m.usage_bytes is not None
        # The kubelet's figures, through the node proxy, beside it.
        assert m.working_set_bytes and m.working_set_bytes > 5 * 2**20
        assert m.rss_bytes and m.rss_bytes > 0
        # The operator's own process RSS, read through kubectl port-forward.
        assert m.operator_rss_bytes and m.operator_rss_bytes > 5 * 2**20
        pid = sampler.port_forward_pid
        assert pid is not None and _alive(pid)
        assert st.restart_count == 0 and st.oom_count == 0 and not st.oom_killed
        quick = sampler.quick()
        assert quick.memory.unreclaimable_bytes and quick.cpu_seconds and quick.cpu_seconds > 0
        # After the first one-shot exec, memory.stat comes through one kept-open exec: a
        # reading no longer costs a process in the container (nor a kubectl on the host).
        stream = sampler.stream_pid
        assert stream is not None and _alive(stream)
        again = sampler.quick()
        assert sampler.stream_pid == stream
        assert again.cpu_seconds is not None and again.cpu_seconds >= quick.cpu_seconds
        assert again.memory.unreclaimable_bytes == pytest.approx(
            quick.memory.unreclaimable_bytes, rel=0.2
        )
        second = sampler.sample()
        assert second.state.pod == st.pod
        assert sampler.port_forward_pid == pid, "the forward is reused across samples"
        assert sampler.unavailable == {}
    assert not _alive(pid), "closing the sampler stops its port-forward"
    assert not _alive(stream), "and its memory.stat stream"
    assert sampler.stream_pid is None
    assert sampler.port_forward_pid is None


@pytest.mark.cluster
def test_missing_deployment_is_a_not_found(namespace: str) -> None:
    from agentic_operator.kube import NotFoundError

    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    with (
        Sampler(cluster, Target(namespace, "agentic-operator", "agentic-operator")) as sampler,
        pytest.raises(NotFoundError),
    ):  # fmt: skip
        sampler.sample()


def _crasher(said: str) -> dict[str, Any]:
    """A Deployment whose container starts, logs `said` and exits 2, as an operator whose
    port is taken does. It asks for no termination message, as most operators do not: the
    last words must come from its log."""
    # Both lines on stderr, as a logging library writes them: the runtime copies stdout and
    # stderr through separate pipes, so two lines written a microsecond apart on different
    # streams can land in the log in either order.
    script = f"sleep 5; echo starting >&2; echo '{said}' >&2; exit 2"
    container = {
        "name": "crasher",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/busybox", "sh", "-c", script],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    labels = {"app": "crasher"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "crasher"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@pytest.mark.cluster
@pytest.mark.node
def test_a_restart_that_is_not_an_oom_says_what_the_container_said(
    namespace: str, kube: KubeClient
) -> None:
    said = "cannot listen on 127.0.0.1:18081: address already in use"
    kube.create(DEPLOYMENTS.path(namespace), _crasher(said))
    events: list[tuple[str, str, dict[str, Any]]] = []
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    with Sampler(
        cluster, Target(namespace, "crasher", "crasher"),
        on_event=lambda kind, message, **data: events.append((kind, message, data)),
        operator_metrics=False,
    ) as sampler:  # fmt: skip
        wait_until(lambda: sampler.quick().state.state != "absent", timeout=60, what="the pod")
        wait_until(lambda: sampler.quick().state.restart_count > 0, timeout=90, what="a restart")
    restarted = [(m, d) for k, m, d in events if k == "container-restarted"]
    assert len(restarted) == 1, events
    message, data = restarted[0]
    assert message.endswith(f"restarted (1): Error, exit code 2: {said}"), message
    assert data["exit_code"] == 2 and data["reason"] == "Error"
    assert said in data["log_tail"] and "starting" in data["log_tail"]
    assert not data["termination_message"]
    assert sampler.quick().state.oom_count == 0
