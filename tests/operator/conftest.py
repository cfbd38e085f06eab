"""Fixtures for operator tests: a raw client, the operator as a process or in-process.

Every cluster test talks to the real apiserver. The operator runs either as a subprocess
(its PID recorded and only that PID signalled) or in-process with a stop event when a
test needs to look into its caches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentic_operator._config import OperatorConfig
from agentic_operator._kube import ApiError, KubeClient, load_config
from agentic_operator._metrics import Registry
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._reconcile.manager import Operator
from tests.conftest import REPO, _make_namespace, kubectl

RUNNER_IMAGE = "localhost/ambient-runner:dev"
# The operators these tests start manage only namespaces carrying this run's scope label,
# so another operator running in a shared cluster never reconciles (or races) their objects.
SCOPE_KEY = "agentic-test/scope"
SCOPE = uuid.uuid4().hex[:8]
SCOPE_SELECTOR = f"{SCOPE_KEY}={SCOPE}"
SCOPE_LABELS = {SCOPE_KEY: SCOPE}
GROUP_PATH = "/apis/vteam.ambient-code/v1alpha1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def project_roles(kubeconfig: Path) -> None:
    """The ClusterRoles that group RoleBindings point at (part of deploy/base)."""
    kubectl("apply", "-f", str(REPO / "deploy" / "base" / "project-roles.yaml"))


@pytest.fixture
def project(request: pytest.FixtureRequest, api_client: Any, crds: None) -> Iterator[str]:
    """A fresh namespace managed by the operators these tests start (see SCOPE_SELECTOR)."""
    yield from _make_namespace(request, api_client, SCOPE_LABELS)


@pytest.fixture(scope="session")
def kube(kubeconfig: Path, crds: None, project_roles: None) -> Iterator[KubeClient]:
    client = KubeClient(load_config(kubeconfig=str(kubeconfig)))
    yield client
    client.close()


def sessions_path(ns: str, name: str | None = None, sub: str | None = None) -> str:
    p = f"{GROUP_PATH}/namespaces/{ns}/agenticsessions"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


def settings_path(ns: str, name: str | None = None) -> str:
    p = f"{GROUP_PATH}/namespaces/{ns}/projectsettings"
    return f"{p}/{name}" if name else p


def new_session(
    kube: KubeClient, ns: str, name: str, *, env: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    body = {
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "AgenticSession",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"initialPrompt": "test", **spec},
    }
    if env:
        body["spec"]["environmentVariables"] = env
    return kube.create(sessions_path(ns), body)


def get_session(kube: KubeClient, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(sessions_path(ns, name))
    except ApiError as e:
        if e.not_found:
            return None
        raise


def phase(kube: KubeClient, ns: str, name: str) -> str:
    obj = get_session(kube, ns, name) or {}
    return str((obj.get("status") or {}).get("phase") or "")


def get_or_none(kube: KubeClient, path: str) -> dict[str, Any] | None:
    try:
        return kube.get(path)
    except ApiError as e:
        if e.not_found:
            return None
        raise


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    health_port: int
    log_path: Path
    stopped_in: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> str:
        return self.get("/metrics", self.metrics_port)[1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM this PID only; returns how long the process took to exit."""
        if self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.stopped_in = time.monotonic() - t0
        return self.stopped_in


def start_operator_process(
    kubeconfig: Path,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> OperatorProcess:
    mport, hport = free_port(), free_port()
    log_path = tmp_path / f"operator-{mport}.log"
    full_env = {
        **os.environ,
        "AMBIENT_CODE_RUNNER_IMAGE": RUNNER_IMAGE,
        "PYTHONUNBUFFERED": "1",
        "AGENTIC_MANAGED_SELECTOR": SCOPE_SELECTOR,
        **(env or {}),
    }
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentic_operator",
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-bind-address",
                f"127.0.0.1:{mport}",
                "--health-probe-bind-address",
                f"127.0.0.1:{hport}",
                *(args or []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(REPO),
        )
    op = OperatorProcess(proc, mport, hport, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited with {proc.returncode}:\n{op.log()}")
        if op.get("/readyz")[0] == 200:
            return op
        time.sleep(0.1)
    op.terminate()
    raise RuntimeError(f"operator not ready within 60s:\n{op.log()}")


@pytest.fixture
def operator_process(
    kubeconfig: Path, kube: KubeClient, tmp_path: Path
) -> Iterator[OperatorProcess]:
    op = start_operator_process(kubeconfig, tmp_path)
    try:
        yield op
    finally:
        op.terminate()


@dataclass
class InProcessOperator:
    op: Operator
    stop: threading.Event
    thread: threading.Thread
    client: KubeClient
    errors: list[BaseException] = field(default_factory=list)

    def close(self) -> None:
        self.stop.set()
        self.op.shutdown(3.0)
        self.thread.join(10)
        self.client.close()


def start_in_process(
    kubeconfig: Path, *, controllers: bool = True, **overrides: Any
) -> InProcessOperator:
    config = OperatorConfig(
        kubeconfig=str(kubeconfig),
        runner_image=RUNNER_IMAGE,
        metrics_bind_address="0",
        health_probe_bind_address="0",
        managed_selector=SCOPE_SELECTOR,
        **overrides,
    )
    client = KubeClient(load_config(kubeconfig=str(kubeconfig)))
    op = Operator(config, client, OperatorMetrics(Registry()))
    stop = threading.Event()
    holder: InProcessOperator

    def run() -> None:
        try:
            if op.start_caches(stop) and controllers:
                op.start_controllers(stop)
        except BaseException as e:
            holder.errors.append(e)

    thread = threading.Thread(target=run, name="test-operator", daemon=True)
    holder = InProcessOperator(op, stop, thread, client)
    thread.start()
    deadline = time.monotonic() + 60
    while not op.synced():
        if holder.errors or time.monotonic() > deadline:
            holder.close()
            raise RuntimeError(f"in-process operator did not sync: {holder.errors}")
        time.sleep(0.05)
    return holder


@pytest.fixture
def in_process(kubeconfig: Path, kube: KubeClient) -> Iterator[InProcessOperator]:
    holder = start_in_process(kubeconfig)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture(autouse=True)
def _release_runner_pods(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, delete runner pods left in this test's (terminating) namespaces.

    Namespace deletion alone is not relied on to free the node: runner pods request CPU,
    and a namespace that takes long to terminate would keep them scheduled.
    """
    yield
    funcargs = getattr(request.node, "funcargs", {})
    namespaces = [
        funcargs[n] for n in ("namespace", "managed_namespace", "project") if n in funcargs
    ]
    kube_client = funcargs.get("kube")
    if not namespaces or kube_client is None:
        return
    for ns in namespaces:
        with contextlib.suppress(ApiError):
            kube_client.delete(
                f"/api/v1/namespaces/{ns}/pods",
                params={"labelSelector": "app=ambient-code-runner", "gracePeriodSeconds": "0"},
            )
