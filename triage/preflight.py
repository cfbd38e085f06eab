"""Checks, before the first change, that a run can finish and be undone.

Everything that can be known up front is checked here, so a run never fails half-way for a
reason it could have seen: the CRDs exist, the Deployment and its container exist, and RBAC
lets us do every verb the run and its restore need (a run that can patch but not restore is
the worst outcome).
"""

from __future__ import annotations

from typing import Any

from triage.errors import PreflightError
from triage.kube import ApiError, Cluster
from triage.quantity import format_bytes, parse_quantity_bytes

CRDS = ("agenticsessions.vteam.ambient-code", "projectsettings.vteam.ambient-code")

#: (verb, group, resource, subresource, namespaced-in-operator-namespace)
_NEEDED: tuple[tuple[str, str, str, str, bool], ...] = (
    ("get", "apps", "deployments", "", True),
    ("update", "apps", "deployments", "", True),
    ("list", "", "pods", "", True),
    ("get", "", "nodes", "proxy", False),
    ("create", "", "namespaces", "", False),
    ("delete", "", "namespaces", "", False),
    ("list", "", "namespaces", "", False),
    ("create", "vteam.ambient-code", "agenticsessions", "", False),
    ("update", "vteam.ambient-code", "agenticsessions", "status", False),
    ("create", "vteam.ambient-code", "projectsettings", "", False),
)


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator's container: the one named like the Deployment, else the first."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    name = deployment["metadata"]["name"]
    return next((c for c in containers if c["name"] == name), containers[0])


def _allowed(
    cluster: Cluster, verb: str, group: str, resource: str, sub: str, ns: str | None
) -> bool:
    attrs: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    review = cluster.json(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        },
    )
    return bool(review.get("status", {}).get("allowed"))


def preflight(
    cluster: Cluster, *, namespace: str, deployment: str, mem_limit_bytes: int, profile: str
) -> dict[str, Any]:
    """Return the operator Deployment as it is now, or raise PreflightError naming the gap."""
    for crd in CRDS:
        try:
            cluster.json("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
        except ApiError as e:
            if e.not_found:
                raise PreflightError(
                    f"CRD {crd} is not installed; apply deploy/crds first (kubectl apply -k deploy/crds)"
                ) from e
            raise PreflightError(f"cannot read CRD {crd}: {e}") from e
    try:
        dep: dict[str, Any] = cluster.json(
            "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
        )
    except ApiError as e:
        if e.not_found:
            raise PreflightError(
                f"Deployment {namespace}/{deployment} not found; pass --operator-namespace and "
                "--operator-deployment naming the operator's Deployment"
            ) from e
        raise PreflightError(f"cannot read Deployment {namespace}/{deployment}: {e}") from e
    if not dep["spec"]["template"]["spec"].get("containers"):
        raise PreflightError(f"Deployment {namespace}/{deployment} has no containers")
    if (dep["spec"].get("replicas") or 0) < 1:
        raise PreflightError(
            f"Deployment {namespace}/{deployment} is scaled to 0; there is no operator to measure"
        )
    needed = list(_NEEDED)
    if profile != "none":
        needed.append(("create", "", "pods", "exec", True))  # copying captures, py-spy dump
    denied = [
        f"{verb} {resource}{'/' + sub if sub else ''}"
        for verb, group, resource, sub, in_ns in needed
        if not _allowed(cluster, verb, group, resource, sub, namespace if in_ns else None)
    ]
    if denied:
        raise PreflightError(f"RBAC denies what the run needs: {', '.join(denied)}")
    _check_limit_ranges(cluster, namespace=namespace, mem_limit_bytes=mem_limit_bytes)
    return dep


def _check_limit_ranges(cluster: Cluster, *, namespace: str, mem_limit_bytes: int) -> None:
    # A LimitRange minimum above the new limit makes every new pod fail admission: the run
    # would wait for a rollout that can never happen.
    ranges = cluster.json("GET", f"/api/v1/namespaces/{namespace}/limitranges").get("items", [])
    for lr in ranges:
        for limit in lr.get("spec", {}).get("limits", []):
            minimum = (limit.get("min") or {}).get("memory")
            if (
                limit.get("type") == "Container"
                and minimum
                and parse_quantity_bytes(minimum) > mem_limit_bytes
            ):
                raise PreflightError(
                    f"LimitRange {namespace}/{lr['metadata']['name']} requires at least "
                    f"{minimum} per container, above --mem-limit {format_bytes(mem_limit_bytes)}"
                )
