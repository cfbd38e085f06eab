"""Session-scoped access to the real local cluster, and a fresh namespace per test.

Cluster tests never mock the apiserver: they talk to the cluster that `make cluster-up`
started (kubeconfig at $TRIAGE_KUBECONFIG, default ~/.kube/triage-local.yaml). When it is not
reachable the tests error loudly instead of skipping, because CI runs every test.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentic_operator.contract import AGENTIC_SESSIONS, MANAGED_LABEL, PROJECT_SETTINGS
from agentic_operator.kube import KubeClient, load_config
from agentic_operator.resources import NAMESPACES

REPO = Path(__file__).resolve().parent.parent
KUBECONFIG = Path(os.environ.get("TRIAGE_KUBECONFIG", Path.home() / ".kube" / "triage-local.yaml"))
TEST_LABEL = "triage.test/owned"

# A shell without job control starts background jobs with SIGINT ignored (CI does), and an
# ignored signal stays ignored across fork and exec: every `triage` the tests start would
# then shrug off the Ctrl-C the fault tests send it. Children of a process with a handler
# start with the default disposition, as they would from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
        f"crd/{AGENTIC_SESSIONS.qualified}",
        f"crd/{PROJECT_SETTINGS.qualified}",
        "--timeout=60s",
    )


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Iterator[KubeClient]:
    """The project's own client (the one the operator and triage use), on the test cluster."""
    client = KubeClient(load_config(kubeconfig=str(kubeconfig)), max_connections=8)
    yield client
    client.close()


def _ns_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:5]}"


def make_namespace(
    request: pytest.FixtureRequest, kube: KubeClient, labels: dict[str, str] | None = None
) -> Iterator[str]:
    """A fresh namespace named after the test, deleted after it (unless asked to keep it)."""
    name = _ns_name(request)
    kube.create(
        NAMESPACES.path(),
        {"metadata": {"name": name, "labels": {TEST_LABEL: "true", **(labels or {})}}},
    )
    try:
        yield name
    finally:
        if os.environ.get("TRIAGE_KEEP_TEST_NAMESPACES") != "1":
            kube.delete_if_present(NAMESPACES.path(name=name), grace_seconds=0)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube: KubeClient, crds: None) -> Iterator[str]:
    """A fresh, unmanaged namespace, deleted after the test."""
    yield from make_namespace(request, kube)


@pytest.fixture
def managed_namespace(
    request: pytest.FixtureRequest, kube: KubeClient, crds: None
) -> Iterator[str]:
    """A fresh namespace labelled managed, deleted after the test."""
    yield from make_namespace(request, kube, {MANAGED_LABEL: "true"})


#: How much longer every wait_until may take (TRIAGE_TEST_WAIT_SCALE; run-suite.sh sets it).
WAIT_SCALE = float(os.environ.get("TRIAGE_TEST_WAIT_SCALE", "1"))


def wait_until(
    predicate: Any, *, timeout: float = 60.0, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test on timeout.

    The timeout is stretched by WAIT_SCALE: tests/run-suite.sh runs two halves of the suite
    side by side on a 2-core node, where a pod start or a status write can take several
    times what it takes alone. Only a failing wait gets longer.
    """
    timeout *= WAIT_SCALE
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


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(args: list[str], *, columns: int = 200) -> CliResult:
    """`triage ARGS` through the real entry point (`triage.cli.run`: the one error path).

    Output is captured as a pipe would see it, `columns` wide (rich reads COLUMNS).
    """
    from triage.cli import run

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(args)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return CliResult(code, out.getvalue(), err.getvalue())
