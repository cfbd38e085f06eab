"""triage.patch's rollout wait on a real node: a Recreate rollout never waits on a pod whose
containers have all stopped, and never removes one that still runs something."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agentic_operator.kube import KubeClient
from agentic_operator.resources import DEPLOYMENTS, PODS
from tests.conftest import KUBECONFIG, wait_until
from tests.operator.conftest import RUNNER_IMAGE, create_admitted_pod
from triage.cluster import connect
from triage.journal import Journal
from triage.patch import _delete_pod, apply, owned_by_deployment, stopped_while_deleted

pytestmark = [pytest.mark.cluster, pytest.mark.node]

# Stops at once on SIGTERM; a capture-sized file in an emptyDir, as memray's captures are.
_QUICK = "trap 'exit 0' TERM; head -c 50000000 /dev/zero > /scratch/f; while :; do sleep 0.2; done"


def _deployment(script: str) -> dict[str, Any]:
    labels = {"app": "rollout-test"}
    container = {
        "name": "op",
        "image": RUNNER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "op"},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": False,
                },
            },
        },
    }


def _ready(kube: KubeClient, ns: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        dep = kube.get(DEPLOYMENTS.path(ns, "op"))
        return dep if (dep.get("status") or {}).get("readyReplicas") == 1 else None

    return wait_until(done, timeout=90, what="the Deployment ready")


def test_a_recreate_rollout_removes_the_stopped_old_pod_and_journals_it(
    namespace: str, kube: KubeClient, tmp_path: Path
) -> None:
    kube.create(DEPLOYMENTS.path(namespace), _deployment(_QUICK))
    dep = _ready(kube, namespace)
    old = kube.list(PODS.path(namespace))["items"]
    assert len(old) == 1
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    journal = Journal.create(tmp_path / "run", cluster=cluster, deployment=dep)
    spec = copy.deepcopy(dep["spec"])
    spec["template"]["metadata"]["annotations"] = {"rollout-test/round": "2"}
    apply(cluster, journal, spec, timeout=90, details={})
    # The old pod was removed by the rollout wait once its container had stopped, with the
    # pod as it was kept in the journal first, before the kubelet's own removal.
    removed = [s for s in journal.steps if s["step"] == "delete-stopped-pod"]
    assert [s["pod"]["metadata"]["uid"] for s in removed] == [old[0]["metadata"]["uid"]], (
        journal.steps
    )
    # And that DELETE is what removed it (not the kubelet's own removal, not another pod).
    outcomes = [(s["uid"], s["outcome"]) for s in journal.steps if s["step"] == "pod-deleted"]
    assert outcomes == [(old[0]["metadata"]["uid"], "deleted")], journal.steps
    kept = removed[0]["pod"]
    assert stopped_while_deleted(kept)
    assert "terminated" in kept["status"]["containerStatuses"][0]["state"]
    pods = kube.list(PODS.path(namespace))["items"]
    assert [p["metadata"]["uid"] for p in pods] != [old[0]["metadata"]["uid"]]
    assert all(p["metadata"]["annotations"]["rollout-test/round"] == "2" for p in pods)


def test_the_delete_says_what_came_of_it(namespace: str, kube: KubeClient) -> None:
    # The journal's pod-deleted step must tell a pod this DELETE removed from one already
    # gone and from a new pod that took the name (which the UID precondition leaves alone).
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        # Bound to a node that does not exist: no kubelet ever runs or removes it.
        "spec": {
            "nodeName": "no-such-node",
            "containers": [{"name": "c", "image": "x"}],
            "automountServiceAccountToken": False,
        },
    }
    create_admitted_pod(kube, namespace, pod)  # a new namespace may not have its token yet
    first = kube.get(PODS.path(namespace, "p"))["metadata"]["uid"]
    assert _delete_pod(cluster, namespace, "p", "not-" + first) == "replaced"
    assert kube.get(PODS.path(namespace, "p"))["metadata"]["uid"] == first
    assert _delete_pod(cluster, namespace, "p", first) == "deleted"
    wait_until(
        lambda: kube.get_or_none(PODS.path(namespace, "p")) is None, timeout=30, what="the pod gone"
    )
    assert _delete_pod(cluster, namespace, "p", first) == "gone"


def test_a_pod_still_running_a_container_is_not_stopped() -> None:
    # A container that has not stopped yet (its grace period still running) keeps the pod:
    # removing it would start the new pod beside a live old one, which Recreate forbids.
    done = {"terminated": {"exitCode": 0, "finishedAt": "2026-12-04T00:00:31Z"}}
    pod: dict[str, Any] = {
        # Deletion asked at 00:00:00 (30 s grace period, so the timestamp says 00:00:30).
        "metadata": {"deletionTimestamp": "2026-12-04T00:00:30Z", "deletionGracePeriodSeconds": 30},
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "op"}, {"name": "side"}]},
        "status": {
            "initContainerStatuses": [{"name": "init", "state": copy.deepcopy(done)}],
            "containerStatuses": [
                {"name": "op", "state": copy.deepcopy(done)},
                {"name": "side", "state": {"running": {}}},
            ],
        },
    }  # fmt: skip
    assert not stopped_while_deleted(pod)
    pod["status"]["containerStatuses"][1]["state"] = copy.deepcopy(done)
    assert stopped_while_deleted(pod)
    # A sidecar init container still running keeps it too.
    pod["status"]["initContainerStatuses"][0]["state"] = {"running": {}}
    assert not stopped_while_deleted(pod)
    pod["status"]["initContainerStatuses"][0]["state"] = copy.deepcopy(done)
    # A "terminated" from before the deletion was asked may be stale: the container may
    # have been restarted since. Left to the kubelet.
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = (
        "2026-12-03T23:59:59Z"
    )
    assert not stopped_while_deleted(pod)
    pod["status"]["containerStatuses"][0]["state"] = copy.deepcopy(done)
    # Not being deleted: a pod whose containers exited is the kubelet's to restart.
    assert not stopped_while_deleted({**pod, "metadata": {}})
    # Already deleted at once and held by a finalizer: nothing more to do (nor to journal).
    held = copy.deepcopy(pod)
    held["metadata"]["deletionGracePeriodSeconds"] = 0
    assert not stopped_while_deleted(held)
    # A container with no status yet is not known to have stopped.
    pod["status"]["containerStatuses"].pop()
    assert not stopped_while_deleted(pod)


def test_only_the_deployments_own_pods_are_candidates() -> None:
    def pod(labels: dict[str, str], *refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"labels": labels, "ownerReferences": list(refs)}}

    rs = {"kind": "ReplicaSet", "name": "op-5d8f7c9b6", "controller": True}
    assert owned_by_deployment(pod({"pod-template-hash": "5d8f7c9b6"}, rs), "op")
    # Same labels, another owner: another Deployment's ReplicaSet, a bare pod, a non-controller.
    assert not owned_by_deployment(pod({"pod-template-hash": "5d8f7c9b6"}, rs), "op-5d8f7c9b6")
    assert not owned_by_deployment(pod({"pod-template-hash": "7f6d5c4b3"}, rs), "op")
    assert not owned_by_deployment(pod({"pod-template-hash": "5d8f7c9b6"}), "op")
    assert not owned_by_deployment(
        pod({"pod-template-hash": "5d8f7c9b6"}, {**rs, "controller": False}), "op"
    )
    assert not owned_by_deployment(
        pod({"pod-template-hash": "5d8f7c9b6"}, {**rs, "kind": "StatefulSet"}), "op"
    )
    assert not owned_by_deployment(pod({}, rs), "op")
