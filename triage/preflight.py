"""Checks, before the first change, that a run can finish and be undone.

Everything that can be known up front is checked here, so a run never fails half-way for a
reason it could have seen: the kinds it will create are served (the CRDs are installed), the
Deployment and its container exist, RBAC lets us do every verb the run and its restore need
(a run that can patch but not restore is the worst outcome), the profiler can work on this
target (memray importable by the operator's own interpreter, pod security allowing a py-spy
sidecar), and the patched pod would be admitted (a server-side dry run). Each failure is one
line and exit code 3, with nothing changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.contract import AGENTIC_SESSIONS, PROJECT_SETTINGS
from agentic_operator.kube import ForbiddenError, InvalidError, KubeError, NotFoundError
from agentic_operator.resources import DEPLOYMENTS, LIMIT_RANGES, PODS
from triage import custom_objects
from triage.cluster import Cluster
from triage.custom_objects import ObjectTemplate, ServedKind
from triage.errors import PreflightError
from triage.quantity import format_bytes, parse_quantity_bytes
from triage.scenario import Scenario
from triage.target import Target, container_of, pick_pod, resolve_command, resolve_python

#: (verb, group, resource, subresource, in the operator's namespace)
_NEEDED: tuple[tuple[str, str, str, str, bool], ...] = (
    ("get", "apps", "deployments", "", True),
    ("update", "apps", "deployments", "", True),
    ("list", "", "pods", "", True),
    ("create", "", "pods", "", True),  # the admission dry run of the patched pod
    ("delete", "", "pods", "", True),  # the cold start
    ("create", "", "pods", "exec", True),  # memory.stat, captures, py-spy
    ("create", "coordination.k8s.io", "leases", "", True),  # the run lock
    ("update", "coordination.k8s.io", "leases", "", True),
    ("delete", "coordination.k8s.io", "leases", "", True),
    ("get", "", "nodes", "proxy", False),
    ("create", "", "namespaces", "", False),
    ("patch", "", "namespaces", "", False),
    ("delete", "", "namespaces", "", False),
    ("list", "", "namespaces", "", False),
    ("list", "", "limitranges", "", True),
)
_SESSIONS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("create", AGENTIC_SESSIONS.group, AGENTIC_SESSIONS.plural, "", False),
    ("update", AGENTIC_SESSIONS.group, AGENTIC_SESSIONS.plural, "status", False),
)


@dataclass
class Checked:
    """What preflight learnt, for the run to use."""

    deployment: dict[str, Any]
    target: Target
    pod: str | None
    kinds: list[tuple[ObjectTemplate, ServedKind]] = field(default_factory=list)


def _allowed(
    cluster: Cluster, verb: str, group: str, resource: str, sub: str, ns: str | None
) -> bool:
    attrs: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    review = cluster.client.create(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        },
    )
    return bool(review.get("status", {}).get("allowed"))


def _crd(cluster: Cluster, name: str) -> None:
    try:
        cluster.client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    except NotFoundError as e:
        raise PreflightError(
            f"CRD {name} is not installed; apply deploy/crds first (kubectl apply -k deploy/crds)"
        ) from e
    except KubeError as e:
        raise PreflightError(f"cannot read CRD {name}: {e}") from e


def deployment_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    try:
        dep: dict[str, Any] = cluster.client.get(DEPLOYMENTS.path(namespace, name))
    except NotFoundError as e:
        raise PreflightError(
            f"Deployment {namespace}/{name} not found; pass --operator-namespace and "
            "--operator-deployment naming the operator's Deployment"
        ) from e
    except KubeError as e:
        raise PreflightError(f"cannot read Deployment {namespace}/{name}: {e}") from e
    if not dep["spec"]["template"]["spec"].get("containers"):
        raise PreflightError(f"Deployment {namespace}/{name} has no containers")
    if (dep["spec"].get("replicas") or 0) < 1:
        raise PreflightError(
            f"Deployment {namespace}/{name} is scaled to 0; there is no operator to measure"
        )
    return dep


def preflight(
    cluster: Cluster,
    *,
    namespace: str,
    deployment: str,
    scenario: Scenario,
    mem_limit_bytes: int,
    container: str | None = None,
    target_command: str | None = None,
    needs_command: bool = False,
    extra_verbs: tuple[tuple[str, str, str, str, bool], ...] = (),
) -> Checked:
    """The Deployment as it is now and the target in it, or PreflightError naming the gap."""
    try:
        return _preflight(cluster, namespace=namespace, deployment=deployment, scenario=scenario,
                          mem_limit_bytes=mem_limit_bytes, container=container,
                          target_command=target_command, needs_command=needs_command,
                          extra_verbs=extra_verbs)  # fmt: skip
    except ForbiddenError as e:
        # A check of its own that RBAC refuses: the list above missed a verb. Still one line.
        raise PreflightError(
            f"RBAC denies {e.method} {e.path} ({e.message}); deploy/triage has the "
            "least-privilege ClusterRole"
        ) from e


def _preflight(
    cluster: Cluster,
    *,
    namespace: str,
    deployment: str,
    scenario: Scenario,
    mem_limit_bytes: int,
    container: str | None,
    target_command: str | None,
    needs_command: bool,
    extra_verbs: tuple[tuple[str, str, str, str, bool], ...],
) -> Checked:
    creates_sessions = scenario.sessions_per_ns > 0 or scenario.mix is not None
    if creates_sessions or scenario.managed:
        for crd in (AGENTIC_SESSIONS.qualified, PROJECT_SETTINGS.qualified):
            _crd(cluster, crd)
    kinds = [(t, custom_objects.resolve(cluster.client, t)) for t in scenario.objects]
    dep = deployment_of(cluster, namespace, deployment)
    spec_container = container_of(dep, container)
    target = Target(namespace=namespace, deployment=deployment, container=spec_container["name"])
    needed = list(_NEEDED) + (list(_SESSIONS) if creates_sessions else []) + list(extra_verbs)
    denied = [
        f"{verb} {resource}{'/' + sub if sub else ''}"
        for verb, group, resource, sub, in_ns in needed
        if not _allowed(cluster, verb, group, resource, sub, namespace if in_ns else None)
    ]
    if denied:
        raise PreflightError(
            f"RBAC denies what the run needs: {', '.join(denied)} (deploy/triage has the "
            "least-privilege ClusterRole)"
        )
    _check_limit_ranges(cluster, namespace=namespace, mem_limit_bytes=mem_limit_bytes)
    pod_doc, _ = pick_pod(cluster, namespace=namespace, deployment=deployment)
    pod = pod_doc["metadata"]["name"] if pod_doc is not None else None
    if needs_command or target_command:
        resolve_command(cluster, target, container=spec_container, pod=pod, override=target_command)
        resolve_python(cluster, target, pod=pod)
    return Checked(deployment=dep, target=target, pod=pod, kinds=kinds)


def _check_limit_ranges(cluster: Cluster, *, namespace: str, mem_limit_bytes: int) -> None:
    # A LimitRange minimum above the new limit makes every new pod fail admission: the run
    # would wait for a rollout that can never happen.
    ranges = cluster.client.list(LIMIT_RANGES.path(namespace)).get("items", [])
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


def admission_dry_run(cluster: Cluster, *, namespace: str, spec: dict[str, Any]) -> None:
    """Would a pod from the patched template be admitted? A server-side dry run says.

    Admission (PodSecurityPolicy, pod security, webhooks, LimitRanges) judges pods, not
    Deployments: a template it rejects would leave the rollout waiting forever.
    """
    template = copy.deepcopy(spec["template"])
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "triage-admission-check-",
            "namespace": namespace,
            "labels": {"triage.ambient-code.io/dry-run": "true"},
            "annotations": (template.get("metadata") or {}).get("annotations") or {},
        },
        "spec": template["spec"],
    }
    try:
        cluster.client.request("POST", PODS.path(namespace), body=body, params={"dryRun": "All"})
    except (ForbiddenError, InvalidError) as e:
        raise PreflightError(
            f"the run's pod would not be admitted in {namespace}: {e.message or e}"
        ) from e
    except KubeError as e:
        raise PreflightError(f"checking the run's pod against admission failed: {e}") from e
