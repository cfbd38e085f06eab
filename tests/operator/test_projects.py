"""Managed namespace -> default ProjectSettings -> RBAC and LimitRange, on the real cluster."""

from __future__ import annotations

from typing import Any

import pytest

from agentic_operator.contract import PROJECT_SETTINGS
from agentic_operator.kube import KubeClient
from tests.conftest import wait_until
from tests.operator.conftest import SCOPE_LABELS, OperatorProcess, sample

pytestmark = pytest.mark.cluster

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces"


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        r["uid"] == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences", [])
    )


def test_managed_namespace_cascade(
    kube: KubeClient, project: str, operator_process: OperatorProcess
) -> None:
    ns = project
    ps = wait_until(
        lambda: kube.get_or_none(PROJECT_SETTINGS.path(ns, "projectsettings")),
        timeout=30,
        what="default ProjectSettings",
    )
    assert ps["spec"]["groupAccess"] == []
    assert ps["metadata"]["labels"]["ambient-code.io/managed"] == "true"
    status = wait_until(
        lambda: (kube.get_or_none(PROJECT_SETTINGS.path(ns, "projectsettings")) or {}).get(
            "status"
        ),
        timeout=30,
        what="ProjectSettings status",
    )
    assert status == {
        "groupBindingsCreated": 0,
        "scheduledSessionRBACReady": True,
        "limitRangeReady": True,
    }

    sa = kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/ambient-session-trigger")
    role = kube.get(f"{RBAC}/{ns}/roles/ambient-session-trigger")
    rb = kube.get(f"{RBAC}/{ns}/rolebindings/ambient-session-trigger")
    lr = kube.get(f"/api/v1/namespaces/{ns}/limitranges/ambient-default-limits")
    for obj in (sa, role, rb, lr):
        assert obj["metadata"]["labels"]["ambient-code.io/managed"] == "true"
        assert _owned_by(obj, ps)
    assert role["rules"] == [
        {
            "apiGroups": ["vteam.ambient-code"],
            "resources": ["agenticsessions"],
            "verbs": ["create", "get", "list", "update"],
        }
    ]
    assert rb["roleRef"]["name"] == "ambient-session-trigger"
    assert rb["subjects"][0]["name"] == "ambient-session-trigger"
    limits = lr["spec"]["limits"][0]
    assert limits["defaultRequest"] == {"cpu": "250m", "memory": "256Mi"}
    assert limits["default"] == {"cpu": "2", "memory": "4Gi"}

    # groupAccess -> RoleBinding <group>-<role> to ClusterRole ambient-project-<role>
    kube.patch(
        PROJECT_SETTINGS.path(ns, "projectsettings"),
        {
            "spec": {
                "groupAccess": [
                    {"groupName": "devs", "role": "edit"},
                    {"groupName": "leads", "role": "admin"},
                ]
            }
        },
    )
    wait_until(
        lambda: (
            (kube.get_or_none(PROJECT_SETTINGS.path(ns, "projectsettings")) or {})
            .get("status", {})
            .get("groupBindingsCreated")
            == 2
        ),
        timeout=30,
        what="two group bindings",
    )
    devs = kube.get(f"{RBAC}/{ns}/rolebindings/devs-edit")
    assert devs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "ambient-project-edit",
    }
    assert devs["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}
    ]
    assert _owned_by(devs, ps)
    assert (
        kube.get(f"{RBAC}/{ns}/rolebindings/leads-admin")["roleRef"]["name"]
        == "ambient-project-admin"
    )

    # Removing an entry removes its binding.
    kube.patch(
        PROJECT_SETTINGS.path(ns, "projectsettings"),
        {"spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}]}},
    )
    wait_until(
        lambda: kube.get_or_none(f"{RBAC}/{ns}/rolebindings/leads-admin") is None,
        timeout=30,
        what="leads-admin pruned",
    )
    assert kube.get_or_none(f"{RBAC}/{ns}/rolebindings/devs-edit") is not None


def test_unmanaged_namespace_gets_nothing(
    kube: KubeClient, namespace: str, operator_process: OperatorProcess
) -> None:
    import time

    time.sleep(3)
    assert kube.get_or_none(PROJECT_SETTINGS.path(namespace, "projectsettings")) is None
    assert (
        kube.get_or_none(f"/api/v1/namespaces/{namespace}/limitranges/ambient-default-limits")
        is None
    )


def test_namespace_labelled_later_becomes_managed(
    kube: KubeClient, namespace: str, operator_process: OperatorProcess
) -> None:
    kube.patch(
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": SCOPE_LABELS}},
    )
    wait_until(
        lambda: kube.get_or_none(PROJECT_SETTINGS.path(namespace, "projectsettings")),
        timeout=30,
        what="default ProjectSettings after labelling",
    )


def _settings_reconciles(operator: OperatorProcess) -> float:
    text = operator.metrics()
    return sum(
        sample(text, "controller_runtime_reconcile_total", controller="projectsettings", result=r)
        or 0.0
        for r in ("success", "error", "requeue", "requeue_after")
    )


def test_own_status_write_is_not_reconciled_again(
    kube: KubeClient, namespace: str, operator_process: OperatorProcess
) -> None:
    """One reconcile makes a new project; the status it writes does not start a second one
    (which would re-create four objects only to be told they exist), but a status that
    someone else made not-ready does, and is put right."""
    import time

    before = _settings_reconciles(operator_process)
    kube.patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": SCOPE_LABELS}})
    path = PROJECT_SETTINGS.path(namespace, "projectsettings")
    wait_until(
        lambda: ((kube.get_or_none(path) or {}).get("status") or {}).get("limitRangeReady"),
        timeout=30,
        what="ProjectSettings ready",
    )
    # The status write's event reaches the operator within milliseconds; give it time.
    time.sleep(2)
    assert _settings_reconciles(operator_process) - before == 1

    kube.patch(path + "/status", {"status": {"limitRangeReady": False}})
    wait_until(
        lambda: ((kube.get_or_none(path) or {}).get("status") or {}).get("limitRangeReady"),
        timeout=30,
        what="ProjectSettings ready again after another writer's status",
    )
    assert _settings_reconciles(operator_process) - before == 2
