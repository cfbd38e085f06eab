"""Deploys the real operator from deploy/local into a per-test namespace.

Tests that need the operator running as a pod (triage reproduce, the memray capture that
survives an OOMKill) must not share the `ambient-code` Deployment: each gets its own copy of
the manifests, renamed into its namespace, with its own loopback ports (the local overlay
shares the host network) and its own ClusterRoleBinding.
"""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

import yaml

from tests.conftest import REPO, kubectl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(
    namespace: str, *, metrics_port: int, health_port: int, env: dict[str, str]
) -> list[dict[str, Any]]:
    """The local overlay's objects, moved into `namespace`, CRDs and cluster roles left out."""
    subprocess.run(
        ["bash", str(REPO / "cluster" / "operator-venv.sh")], check=True, capture_output=True
    )
    docs = [
        d for d in yaml.safe_load_all(kubectl("kustomize", str(REPO / "deploy" / "local"))) if d
    ]
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind = doc["kind"]
        if kind in {"CustomResourceDefinition", "Namespace"}:
            continue
        if kind == "ClusterRole":
            out.append(doc)  # shared and identical for every copy; apply is idempotent
            continue
        if kind == "ClusterRoleBinding":
            doc["metadata"]["name"] = f"agentic-operator-{namespace}"
            doc["subjects"][0]["namespace"] = namespace
        else:
            doc["metadata"]["namespace"] = namespace
        if kind == "Deployment":
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
        out.append(doc)
    return out


def deploy(
    namespace: str, *, env: dict[str, str] | None = None, wait: bool = True
) -> dict[str, int]:
    """Apply the operator into `namespace`; return its ports."""
    ports = {"metrics": free_port(), "health": free_port()}
    docs = render(
        namespace, metrics_port=ports["metrics"], health_port=ports["health"], env=env or {}
    )
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )
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
