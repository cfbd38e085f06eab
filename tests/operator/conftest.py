"""Fixtures for operator tests: a raw client, the operator as a process or in-process.

Every cluster test talks to the real apiserver. The operator runs either as a subprocess
(its PID recorded and only that PID signalled) or in-process with a stop event when a
test needs to look into its caches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
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
from agentic_operator._metrics import new_registry
from agentic_operator._objects import RUNNER_CONTAINER, owner_reference
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._reconcile.manager import Operator
from agentic_operator.contract import (
    AGENTIC_SESSIONS,
    API_VERSION,
    RUNNER_APP_LABEL,
    RUNNER_SECRETS_NAME,
    SESSION_LABEL,
)
from agentic_operator.kube import ApiError, KubeClient, ServerError, load_config
from agentic_operator.resources import PODS, SECRETS
from tests.conftest import REPO, kubectl, make_namespace, wait_until
from tests.processes import free_port, operator_command

RUNNER_IMAGE = "localhost/ambient-runner:dev"


def create_parked_runner_pod(kube: KubeClient, ns: str, session: dict[str, Any], name: str) -> None:
    """A runner pod owned by `session` that is never scheduled (a pod object without a
    container on the node), as the operator would have made it.

    A namespace a moment old may not have its default ServiceAccount yet, which pod
    admission needs (the apiserver answers 500 "retry after ..."): retried until it has.
    """
    pod = {
        "metadata": {
            "name": name,
            "labels": {"app": RUNNER_APP_LABEL, SESSION_LABEL: session["metadata"]["name"]},
            "ownerReferences": [owner_reference(session, kind=AGENTIC_SESSIONS.kind)],
        },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"agentic-test/never": "true"},
            "containers": [{"name": RUNNER_CONTAINER, "image": RUNNER_IMAGE}],
        },
    }

    create_admitted_pod(kube, ns, pod)


def create_admitted_pod(kube: KubeClient, ns: str, pod: dict[str, Any]) -> None:
    """Create `pod` in `ns`, retried while the namespace is too new to have its default
    ServiceAccount (pod admission answers 500 "No API token found ..., retry after ...")."""

    def create() -> bool:
        try:
            kube.create(PODS.path(ns), pod)
        except ServerError as e:
            if "service account" not in str(e):
                raise
            return False
        return True

    wait_until(create, timeout=30, what=f"pod {pod['metadata']['name']} admitted")


# The operators these tests start manage only namespaces carrying this run's scope label,
# so another operator running in a shared cluster never reconciles (or races) their objects.
SCOPE_KEY = "agentic-test/scope"
SCOPE = uuid.uuid4().hex[:8]
SCOPE_SELECTOR = f"{SCOPE_KEY}={SCOPE}"
SCOPE_LABELS = {SCOPE_KEY: SCOPE}


@pytest.fixture(scope="session")
def project_roles(kubeconfig: Path) -> None:
    """The ClusterRoles that group RoleBindings point at (part of deploy/base)."""
    kubectl("apply", "-f", str(REPO / "deploy" / "base" / "project-roles.yaml"))


def create_runner_secrets(kube: KubeClient, ns: str) -> None:
    """The prerequisite Secret a session waits for before the operator makes its runner."""
    kube.create(
        SECRETS.path(ns),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": RUNNER_SECRETS_NAME, "namespace": ns},
            "stringData": {"ANTHROPIC_API_KEY": "test-key-not-used"},
        },
    )


@pytest.fixture
def project(request: pytest.FixtureRequest, kube: KubeClient, crds: None) -> Iterator[str]:
    """A fresh namespace managed by the operators these tests start (see SCOPE_SELECTOR),
    holding the prerequisite runner Secret, as a project that can run sessions does."""
    for ns in make_namespace(request, kube, SCOPE_LABELS):
        create_runner_secrets(kube, ns)
        yield ns


@pytest.fixture
def bare_project(request: pytest.FixtureRequest, kube: KubeClient, crds: None) -> Iterator[str]:
    """A managed namespace without the prerequisite runner Secret."""
    yield from make_namespace(request, kube, SCOPE_LABELS)


@pytest.fixture(scope="session")
def kube(kube: KubeClient, crds: None, project_roles: None) -> KubeClient:
    """The root `kube`, once the CRDs and project ClusterRoles are in place."""
    return kube


def new_session(
    kube: KubeClient, ns: str, name: str, *, env: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    body = {
        "apiVersion": API_VERSION,
        "kind": AGENTIC_SESSIONS.kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"initialPrompt": "test", **spec},
    }
    if env:
        body["spec"]["environmentVariables"] = env
    return kube.create(AGENTIC_SESSIONS.path(ns), body)


def get_session(kube: KubeClient, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get_or_none(AGENTIC_SESSIONS.path(ns, name))


def phase(kube: KubeClient, ns: str, name: str) -> str:
    obj = get_session(kube, ns, name) or {}
    return str((obj.get("status") or {}).get("phase") or "")


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
            [*operator_command(kubeconfig, metrics_port=mport, health_port=hport), *(args or [])],
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
    op = Operator(config, client, OperatorMetrics(new_registry()))
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
        funcargs[n]
        for n in ("namespace", "managed_namespace", "project", "bare_project")
        if n in funcargs
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


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a /metrics scrape (label order does not matter)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None
