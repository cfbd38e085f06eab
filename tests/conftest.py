"""Session-scoped access to the real local cluster, and a fresh namespace per test.

Cluster tests never mock the apiserver: they talk to the cluster that `make cluster-up`
started (kubeconfig at $TRIAGE_KUBECONFIG, default ~/.kube/triage-local.yaml). When it is not
reachable the tests error loudly instead of skipping, because CI runs every test.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
KUBECONFIG = Path(os.environ.get("TRIAGE_KUBECONFIG", Path.home() / ".kube" / "triage-local.yaml"))
TEST_LABEL = "triage.test/owned"


def kubectl(*args: str, check: bool = True, input: str | None = None) -> str:
    """Run kubectl against the test cluster and return stdout."""
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=180,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    if not KUBECONFIG.exists():
        pytest.fail(f"no cluster: {KUBECONFIG} missing; run `make cluster-up` first")
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0 or out.stdout.strip() != "ok":
        pytest.fail(f"cluster at {KUBECONFIG} is not ready: {out.stderr.strip()}")
    return KUBECONFIG


@pytest.fixture(scope="session")
def crds(kubeconfig: Path) -> None:
    """Install the project's CRDs (idempotent) and wait until they are established."""
    kubectl("apply", "-k", str(REPO / "deploy" / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/agenticsessions.vteam.ambient-code",
        "crd/projectsettings.vteam.ambient-code",
        "--timeout=60s",
    )


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Any:
    """A `kubernetes` ApiClient bound to the test cluster."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


def _ns_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:5]}"


def _make_namespace(
    request: pytest.FixtureRequest, api_client: Any, labels: dict[str, str]
) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = _ns_name(request)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true", **labels})
        )
    )
    try:
        yield name
    finally:
        if os.environ.get("TRIAGE_KEEP_TEST_NAMESPACES") != "1":
            try:
                core.delete_namespace(name, grace_period_seconds=0)
            except client.ApiException as e:
                if e.status != 404:
                    raise


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: Any, crds: None) -> Iterator[str]:
    """A fresh, unmanaged namespace, deleted after the test."""
    yield from _make_namespace(request, api_client, {})


@pytest.fixture
def managed_namespace(request: pytest.FixtureRequest, api_client: Any, crds: None) -> Iterator[str]:
    """A fresh namespace labelled ambient-code.io/managed=true, deleted after the test."""
    yield from _make_namespace(request, api_client, {"ambient-code.io/managed": "true"})


def wait_until(
    predicate: Any, *, timeout: float = 60.0, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}; last={last!r}")


@pytest.fixture
def operator_namespace(namespace: str) -> Iterator[str]:
    """A namespace with the real operator Deployment (deploy/local) running in it.

    Only for tests that need the operator as a pod; most operator tests run it as a process.
    """
    from tests.operator_deploy import deploy, undeploy

    deploy(namespace)
    try:
        yield namespace
    finally:
        undeploy(namespace)
