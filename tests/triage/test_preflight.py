"""Preflight and the context guard, on the real apiserver: refuse before any change."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import KUBECONFIG, kubectl, wait_until
from triage.cluster import Cluster, connect
from triage.errors import ContextRefusedError, PreflightError
from triage.exitcodes import ExitCode
from triage.guard import check_context
from triage.preflight import Checked, preflight
from triage.scenario import default_scenario, get

pytestmark = [pytest.mark.cluster]
MI = 2**20


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return connect(kubeconfig=str(KUBECONFIG), context=None)


def _deployment(namespace: str, *, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agentic-operator", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "p"}},
            "template": {
                "metadata": {"labels": {"app": "p"}},
                # A pod that cannot start is fine: preflight reads the object only.
                "spec": {
                    "containers": [
                        {
                            "name": "agentic-operator",
                            "image": "localhost/none:x",
                            "imagePullPolicy": "Never",
                        }
                    ]
                },
            },
        },
    }


def _apply(doc: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def _preflight(cluster: Cluster, namespace: str, deployment: str = "agentic-operator") -> Checked:
    """Preflight as a run of the default scenario at a 128 MiB limit calls it."""
    return preflight(
        cluster,
        namespace=namespace,
        deployment=deployment,
        mem_limit_bytes=128 * MI,
        scenario=get(default_scenario()),
    )


def _resource_version(namespace: str) -> str:
    return kubectl(
        "get",
        "deployment",
        "agentic-operator",
        "-n",
        namespace,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    )


def test_returns_the_deployment_when_everything_is_in_place(
    cluster: Cluster, namespace: str
) -> None:
    _apply(_deployment(namespace))
    checked = _preflight(cluster, namespace)
    assert checked.deployment["metadata"]["namespace"] == namespace
    assert checked.deployment["metadata"]["resourceVersion"]
    assert checked.target.container == "agentic-operator"
    assert checked.pod is None or checked.pod.startswith("agentic-operator-")


def test_missing_deployment_is_one_line_naming_the_options(
    cluster: Cluster, namespace: str
) -> None:
    with pytest.raises(PreflightError) as info:
        _preflight(cluster, namespace, "nope")
    assert f"Deployment {namespace}/nope not found" in info.value.message
    assert "--operator-namespace" in info.value.message
    assert info.value.exit_code == ExitCode.PREFLIGHT


def test_scaled_to_zero_is_refused(cluster: Cluster, namespace: str) -> None:
    _apply(_deployment(namespace, replicas=0))
    with pytest.raises(PreflightError, match="scaled to 0"):
        _preflight(cluster, namespace)


def test_limitrange_minimum_above_the_limit_is_refused(cluster: Cluster, namespace: str) -> None:
    _apply(_deployment(namespace))
    _apply(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "floor", "namespace": namespace},
            "spec": {"limits": [{"type": "Container", "min": {"memory": "256Mi"}}]},
        }
    )
    with pytest.raises(PreflightError, match=r"LimitRange .*/floor requires at least 256Mi"):
        _preflight(cluster, namespace)


def _kubeconfig_for(token: str, tmp_path: Path, *, context: str) -> Path:
    admin = yaml.safe_load(KUBECONFIG.read_text())
    cluster_entry = admin["clusters"][0]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster_entry["cluster"]}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    path = tmp_path / f"{context}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_rbac_gaps_are_named_before_any_change(namespace: str, tmp_path: Path) -> None:
    kubectl("create", "serviceaccount", "weak", "-n", namespace)
    # The user can read the Deployment and the CRDs, and nothing else the run needs.
    kubectl(
        "create",
        "clusterrole",
        f"weak-{namespace}",
        "--verb=get",
        "--resource=customresourcedefinitions.apiextensions.k8s.io",
    )
    kubectl(
        "create",
        "clusterrolebinding",
        f"weak-{namespace}",
        f"--clusterrole=weak-{namespace}",
        f"--serviceaccount={namespace}:weak",
    )
    kubectl(
        "create",
        "role",
        "read-deploy",
        "-n",
        namespace,
        "--verb=get",
        "--resource=deployments.apps,limitranges",
    )
    kubectl(
        "create",
        "rolebinding",
        "read-deploy",
        "-n",
        namespace,
        "--role=read-deploy",
        f"--serviceaccount={namespace}:weak",
    )
    _apply(_deployment(namespace))
    try:
        secret_name = wait_until(
            lambda: (
                json.loads(kubectl("get", "sa", "weak", "-n", namespace, "-o", "json")).get(
                    "secrets"
                )
                or [{}]
            )[0].get("name"),
            timeout=30,
            what="the service account's token secret",
        )
        token = base64.b64decode(
            json.loads(kubectl("get", "secret", secret_name, "-n", namespace, "-o", "json"))[
                "data"
            ]["token"]
        ).decode()
        weak = connect(
            kubeconfig=str(_kubeconfig_for(token, tmp_path, context="triage-local")), context=None
        )
        before = _resource_version(namespace)
        with pytest.raises(PreflightError) as info:
            _preflight(weak, namespace)
        message = info.value.message
        assert message.startswith("RBAC denies what the run needs:")
        for gap in (
            "update deployments",
            "create namespaces",
            "create agenticsessions",
            "update agenticsessions/status",
            "create pods/exec",
        ):
            assert gap in message
        assert "get deployments" not in message
        after = _resource_version(namespace)
        assert before == after
    finally:
        kubectl(
            "delete", "clusterrolebinding", f"weak-{namespace}", "--ignore-not-found", check=False
        )
        kubectl("delete", "clusterrole", f"weak-{namespace}", "--ignore-not-found", check=False)


def test_context_guard_refuses_a_context_that_is_not_disposable(tmp_path: Path) -> None:
    admin = yaml.safe_load(KUBECONFIG.read_text())
    token = admin["users"][0]["user"]["token"]
    prod = connect(
        kubeconfig=str(_kubeconfig_for(token, tmp_path, context="prod-east")), context=None
    )
    assert prod.kind == "other"
    with pytest.raises(ContextRefusedError) as info:
        check_context(prod, allow_any=False)
    assert "prod-east" in info.value.message and "--allow-any-context" in info.value.message
    assert info.value.exit_code == ExitCode.CONTEXT_REFUSED
    check_context(prod, allow_any=True)
    local = connect(kubeconfig=str(KUBECONFIG), context=None)
    assert local.kind == "local"
    check_context(local, allow_any=False)


def test_unknown_context_and_unreachable_cluster_are_preflight_errors(tmp_path: Path) -> None:
    with pytest.raises(
        PreflightError,
        match="context 'nope' is not in the kubeconfig; known contexts: triage-local",
    ):
        connect(kubeconfig=str(KUBECONFIG), context="nope")
    admin = yaml.safe_load(KUBECONFIG.read_text())
    admin["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(admin))
    with pytest.raises(PreflightError, match="unreachable"):
        connect(kubeconfig=str(path), context=None)
    with pytest.raises(PreflightError, match="does not exist"):
        connect(kubeconfig=str(tmp_path / "missing.yaml"), context=None)
