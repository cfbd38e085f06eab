"""Deploys the real operator from deploy/local into a per-test namespace.

Tests that need the operator running as a pod (triage reproduce, the memray capture that
survives an OOMKill) must not share the `ambient-code` Deployment: each gets its own copy of
the manifests, renamed into its namespace, with its own loopback ports (the local overlay
shares the host network) and its own ClusterRoleBinding.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

from tests.conftest import REPO, kubectl
from tests.manifests import apply_all, into_namespace, kustomized
from tests.processes import free_port

#: The runtime venv deploy/local mounts; OPERATOR_VENV names another (see `_use_venv`).
DEFAULT_VENV = "/opt/agentic-operator/venv"


def _use_venv(deployment: dict[str, Any], venv: str) -> None:
    """Run the operator from another runtime venv (a second checkout's), mounted at its path.

    A venv's scripts name its interpreter by absolute path, so it is mounted where it was
    made and its entry point is the container's command.
    """
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if volume["name"] == "operator-venv":
            volume["hostPath"]["path"] = venv
    c = pod["containers"][0]
    for mount in c["volumeMounts"]:
        if mount["name"] == "operator-venv":
            mount["mountPath"] = venv
    c["command"] = [f"{venv}/bin/agentic-operator"]


def render(
    namespace: str,
    *,
    metrics_port: int,
    health_port: int,
    env: dict[str, str],
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The local overlay's objects, moved into `namespace`, CRDs and cluster roles left out."""
    venv = os.environ.get("OPERATOR_VENV", DEFAULT_VENV)
    subprocess.run(
        ["bash", str(REPO / "cluster" / "operator-venv.sh")],
        check=True,
        capture_output=True,
        env={**os.environ, "OPERATOR_VENV": venv},
    )

    def edit(doc: dict[str, Any]) -> None:
        c = doc["spec"]["template"]["spec"]["containers"][0]
        c["args"] = [
            a
            for a in c["args"]
            if not a.startswith(("--metrics-bind-address", "--health-probe-bind-address"))
        ] + [
            f"--metrics-bind-address=127.0.0.1:{metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{health_port}",
        ]
        c["ports"] = [
            {"name": "metrics", "containerPort": metrics_port},
            {"name": "health", "containerPort": health_port},
        ]
        for probe in ("livenessProbe", "readinessProbe"):
            c[probe]["httpGet"]["port"] = health_port
        c["env"].extend({"name": k, "value": v} for k, v in env.items())
        if venv != DEFAULT_VENV:
            _use_venv(doc, venv)
        if customize is not None:
            customize(doc)

    return into_namespace(
        kustomized(REPO / "deploy" / "local"),
        namespace,
        binding=f"agentic-operator-{namespace}",
        drop={"CustomResourceDefinition", "Namespace"},
        deployment=edit,
    )


def deploy(
    namespace: str,
    *,
    env: dict[str, str] | None = None,
    wait: bool = True,
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, int]:
    """Apply the operator into `namespace`; return its ports.

    `customize` edits the Deployment before it is applied (replicas, an extra volume).
    """
    ports = {"metrics": free_port(), "health": free_port()}
    docs = render(
        namespace,
        metrics_port=ports["metrics"],
        health_port=ports["health"],
        env=env or {},
        customize=customize,
    )
    apply_all(docs)
    if wait:
        kubectl(
            "-n", namespace, "rollout", "status", "deployment/agentic-operator", "--timeout=180s"
        )
    return ports


def undeploy(namespace: str) -> None:
    kubectl(
        "delete",
        "clusterrolebinding",
        f"agentic-operator-{namespace}",
        "--ignore-not-found",
        check=False,
    )
