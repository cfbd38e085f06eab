"""End-to-end: `triage reproduce` against real operators on the real node.

Every run here is the real CLI (`python -m triage.cli`), as the least-privilege `triage`
identity (deploy/triage), against an operator deployed in a namespace of the test's own and
scoped to namespaces carrying a label unique to the test: only one operator acts on a
namespace at a time. OOM runs are sized to die within a minute or two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, kubectl
from tests.rbac import least_privilege_kubeconfig

SCOPE_KEY = "triage-e2e/scope"


@pytest.fixture(scope="session")
def triage_kubeconfig(
    kubeconfig: Path, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return least_privilege_kubeconfig(tmp_path_factory.mktemp("rbac") / "kubeconfig")


def run_triage(
    *args: str, kubeconfig: Path, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args, "--kubeconfig", str(kubeconfig)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "120", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())},
    )


@dataclass(frozen=True)
class Scope:
    """A label only this test's namespaces carry, and a scenario file that puts it on them."""

    value: str

    @property
    def prefix(self) -> str:
        """The run's namespaces are `<prefix>-<run>-NNNN`: for operators scoped by name glob."""
        return f"e2e-{self.value}"

    @property
    def selector(self) -> str:
        return f"{SCOPE_KEY}={self.value}"

    def scenario(self, path: Path, **fields: Any) -> Path:
        doc = {
            "name": "e2e",
            "description": "terminal sessions in namespaces scoped to one test's operator",
            "session_phase": "Completed",
            "namespaces": 40,
            "sessions_per_ns": 100,
            "batch_size": 5,
            "namespace_labels": {SCOPE_KEY: self.value},
            "namespace_prefix": self.prefix,
            **fields,
        }
        path.write_text(yaml.safe_dump(doc))
        return path


@pytest.fixture
def scope() -> Scope:
    return Scope(uuid.uuid4().hex[:8])


def deployment(namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("-n", namespace, "get", "deployment", name, "-o", "json")))


def run_meta(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def run_events(run_dir: Path) -> list[dict[str, Any]]:
    """events.jsonl of a run, oldest first; [] when the run wrote none."""
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def ours(request: pytest.FixtureRequest, namespace: str, scope: Scope) -> Iterator[str]:
    """Our operator (deploy/local) in the test's namespace, scoped to `scope`, full cache (it
    dies).

    A test that needs the Deployment changed parametrizes `ours` indirectly with a function
    that edits it (`customize` of tests.operator_deploy.deploy).
    """
    from tests.operator_deploy import deploy, undeploy

    customize: Callable[[dict[str, Any]], None] | None = getattr(request, "param", None)
    selector = f"ambient-code.io/managed=true,{scope.selector}"
    deploy(namespace, env={"AGENTIC_MANAGED_SELECTOR": selector}, customize=customize)
    try:
        yield namespace
    finally:
        undeploy(namespace)
