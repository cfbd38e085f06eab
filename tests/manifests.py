"""A test's own copy of an operator's kustomized manifests.

An operator's overlay is written for one copy per cluster. A test gets a copy of its own:
moved into the test's namespace, with a ClusterRoleBinding of its own and, since the pods
share the node's network, loopback ports of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import kubectl


def kustomized(overlay: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(overlay))) if d]


def into_namespace(
    docs: list[dict[str, Any]],
    namespace: str,
    *,
    binding: str,
    drop: Collection[str],
    deployment: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """`docs` moved into `namespace`, without the kinds in `drop`.

    The ClusterRoleBinding is renamed `binding` and binds the copy's ServiceAccount;
    `deployment` edits the Deployment in place.
    """
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind = doc["kind"]
        if kind in drop:
            continue
        if kind == "ClusterRole":
            out.append(doc)  # shared and identical for every copy; apply is idempotent
            continue
        if kind == "ClusterRoleBinding":
            doc["metadata"]["name"] = binding
            doc["subjects"][0]["namespace"] = namespace
        else:
            doc["metadata"]["namespace"] = namespace
        if kind == "Deployment":
            deployment(doc)
        out.append(doc)
    return out


def apply_all(docs: list[dict[str, Any]]) -> None:
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )
