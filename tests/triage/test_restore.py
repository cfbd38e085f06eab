"""Exact restore of the operator Deployment, proven on the real apiserver.

Hypothesis generates Deployment shapes with every kind of presence/absence the upstream
script got wrong (limits and requests present or absent, env entries with value or
valueFrom, capabilities, volumes, annotations); a run is interrupted after a random prefix
of its changes; `restore` must bring the spec back field for field, and be idempotent.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KUBECONFIG, REPO, kubectl
from triage.deployment_patch import (
    RunPatch,
    apply_run_patch,
    is_restored,
    patched_spec,
    restore,
)
from triage.journal import Journal
from triage.kube import Cluster, connect

pytestmark = [pytest.mark.cluster]

_quantity = st.sampled_from(["64Mi", "128Mi", "256Mi", "1Gi", "300M"])
_cpu = st.sampled_from(["10m", "100m", "1"])


@st.composite
def _resources(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("limits", "requests"):
        if draw(st.booleans()):
            group: dict[str, str] = {}
            if draw(st.booleans()):
                group["memory"] = draw(_quantity)
            if draw(st.booleans()):
                group["cpu"] = draw(_cpu)
            if group:
                out[kind] = group
    # A valid Deployment never has a request above its limit.
    lim, req = out.get("limits", {}), out.get("requests", {})
    if "memory" in lim and "memory" in req:
        req["memory"] = lim["memory"]
    if "cpu" in lim and "cpu" in req:
        req["cpu"] = lim["cpu"]
    return out


_env_entry = st.one_of(
    st.builds(
        lambda n, v: {"name": n, "value": v},
        st.sampled_from(["A", "B", "AGENTIC_PROFILE", "AGENTIC_CACHE_MODE", "LOG"]),
        st.text("abc123", min_size=0, max_size=5),
    ),
    st.builds(
        lambda n: {
            "name": n,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        },
        st.sampled_from(["NAMESPACE", "AGENTIC_PROFILE_DIR", "POD_NS"]),
    ),
)


@st.composite
def deployment_shapes(draw: st.DrawFn) -> dict[str, Any]:
    env = draw(st.lists(_env_entry, max_size=5, unique_by=lambda e: e["name"]))
    container: dict[str, Any] = {
        "name": "agentic-operator",
        "image": "localhost/agentic-operator:dev",
        "imagePullPolicy": "Never",
    }
    if env:
        container["env"] = env
    resources = draw(_resources())
    if resources:
        container["resources"] = resources
    volumes: list[dict[str, Any]] = []
    if draw(st.booleans()):
        path = draw(st.sampled_from(["/profiles", "/cache"]))
        container["volumeMounts"] = [{"name": "scratch", "mountPath": path}]
        volumes.append({"name": "scratch", "emptyDir": {}})
    caps = draw(
        st.sampled_from(
            [
                None,
                {"drop": ["ALL"]},
                {"add": ["NET_ADMIN"]},
                {"add": ["SYS_PTRACE"], "drop": ["ALL"]},
            ]
        )
    )
    if caps is not None:
        container["securityContext"] = {"capabilities": caps}
    pod_spec: dict[str, Any] = {"containers": [container]}
    if volumes:
        pod_spec["volumes"] = volumes
    meta: dict[str, Any] = {"name": "agentic-operator", "labels": {"app": "agentic-operator"}}
    annotations = draw(
        st.dictionaries(
            st.sampled_from(["team", "owner", "note"]), st.text("xyz", max_size=3), max_size=2
        )
    )
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 0,  # no pods: the property is about the object, and pods would cost minutes
            "selector": {"matchLabels": {"app": "agentic-operator"}},
            "template": {"metadata": {"labels": {"app": "agentic-operator"}}, "spec": pod_spec},
        },
    }


def _json_patch_steps(
    original: dict[str, Any], target: dict[str, Any]
) -> list[list[dict[str, Any]]]:
    """The run's change split into small steps (one per container field group), as a run
    that applies changes one by one would, so an interruption can fall between any two."""
    steps: list[list[dict[str, Any]]] = []
    # Volumes first: the apiserver rejects a mount whose volume does not exist yet, so no
    # real run can be interrupted in that state.
    if original["template"]["spec"].get("volumes") != target["template"]["spec"].get("volumes"):
        steps.append(
            [
                {
                    "op": "add",
                    "path": "/spec/template/spec/volumes",
                    "value": target["template"]["spec"]["volumes"],
                }
            ]
        )
    oc = original["template"]["spec"]["containers"][0]
    tc = target["template"]["spec"]["containers"][0]
    for key in ("resources", "env", "volumeMounts", "securityContext"):
        if oc.get(key) != tc.get(key):
            steps.append(
                [{"op": "add", "path": f"/spec/template/spec/containers/0/{key}", "value": tc[key]}]
            )
    return steps


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return connect(kubeconfig=str(KUBECONFIG), context=None)


def _create(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(doc)
    body["metadata"]["namespace"] = namespace
    created: dict[str, Any] = cluster.json(
        "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=body
    )
    return created


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=deployment_shapes(),
    profile=st.sampled_from(["memray", "py-spy", "none"]),
    extra_env=st.dictionaries(
        st.sampled_from(["AGENTIC_CACHE_MODE", "A", "NAMESPACE"]),
        st.sampled_from(["full", "x"]),
        max_size=2,
    ),
    cut=st.integers(min_value=0, max_value=8),
    restore_twice=st.booleans(),
)
def test_restore_is_exact_after_an_interruption_at_any_point(
    cluster: Cluster,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
    shape: dict[str, Any],
    profile: str,
    extra_env: dict[str, str],
    cut: int,
    restore_twice: bool,
) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/agentic-operator"
    with contextlib.suppress(Exception):
        cluster.json("DELETE", path)
    _wait_gone(cluster, path)
    before = _create(cluster, namespace, shape)
    run_dir = tmp_path_factory.mktemp("run")
    journal = Journal.create(run_dir, cluster=cluster, deployment=before)
    target = patched_spec(
        journal.original_spec,
        deployment_name="agentic-operator",
        patch=RunPatch(mem_limit_bytes=96 * 2**20, profile=profile, extra_env=extra_env),
    )
    steps = _json_patch_steps(journal.original_spec, target)
    for ops in steps[:cut]:
        cluster.json("PATCH", path, body=ops, content_type="application/json-patch+json")

    assert restore(cluster, journal, wait=False) in {"restored", "already-restored"}
    after = cluster.json("GET", path)
    assert after["spec"] == before["spec"]
    assert (after["metadata"].get("annotations") or {}).get("team") == (
        before["metadata"].get("annotations") or {}
    ).get("team")
    assert is_restored(after, journal)
    if restore_twice:
        assert restore(cluster, Journal.load(run_dir), wait=False) == "already-restored"


def _wait_gone(cluster: Cluster, path: str) -> None:
    import time

    from triage.kube import ApiError

    for _ in range(100):
        try:
            cluster.json("GET", path)
        except ApiError as e:
            if e.not_found:
                return
        time.sleep(0.1)


def test_run_patch_sets_limit_request_env_volume_and_capability(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    shape = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agentic-operator"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "agentic-operator",
                            "image": "localhost/agentic-operator:dev",
                            "resources": {
                                "requests": {"memory": "256Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "env": [{"name": "AGENTIC_PROFILE", "value": "off"}],
                        }
                    ]
                },
            },
        },
    }
    before = _create(cluster, namespace, shape)
    journal = Journal.create(tmp_path, cluster=cluster, deployment=before)
    apply_run_patch(
        cluster,
        journal,
        RunPatch(
            mem_limit_bytes=128 * 2**20, profile="memray", extra_env={"AGENTIC_CACHE_MODE": "full"}
        ),
        timeout=60,
    )
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/agentic-operator"
    c = cluster.json("GET", path)["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"memory": "128Mi"}, "requests": {"memory": "128Mi"}}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env == {
        "AGENTIC_PROFILE": "memray",
        "AGENTIC_PROFILE_DIR": "/profiles",
        "AGENTIC_CACHE_MODE": "full",
    }
    assert {"name": "triage-profiles", "mountPath": "/profiles"} in c["volumeMounts"]
    steps = [s["step"] for s in Journal.load(tmp_path).steps]
    assert steps == ["patch", "patched"]
    assert restore(cluster, journal, wait=False) == "restored"
    assert cluster.json("GET", path)["spec"] == before["spec"]


def test_restore_command_after_kill_is_idempotent_and_refuses_a_recreated_object(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agentic-operator"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "y"}},
            "template": {
                "metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c", "image": "localhost/agentic-operator:dev"}]},
            },
        },
    }
    before = _create(cluster, namespace, doc)
    journal = Journal.create(tmp_path, cluster=cluster, deployment=before)
    spec = patched_spec(
        journal.original_spec,
        deployment_name="agentic-operator",
        patch=RunPatch(mem_limit_bytes=64 * 2**20, profile="py-spy"),
    )
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/agentic-operator"
    # What a killed run leaves behind: the run's spec in place, nobody left to restore it.
    cluster.json("PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json")

    def triage_restore() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / ".venv" / "bin" / "triage"), "restore", str(tmp_path), "--no-wait"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = triage_restore()
    assert first.returncode == 0, first.stderr
    assert "restored from the journal" in first.stderr
    assert cluster.json("GET", path)["spec"] == before["spec"]
    second = triage_restore()
    assert second.returncode == 0 and "already as recorded" in second.stderr

    kubectl("delete", "deployment", "agentic-operator", "-n", namespace, "--wait=true")
    _create(cluster, namespace, doc)
    third = triage_restore()
    assert third.returncode == 6, third.stderr
    assert "recreated" in third.stderr and len(third.stderr.strip().splitlines()) == 1


def test_restore_of_a_directory_without_journal_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "triage"), "restore", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "journal.json is missing" in out.stderr
    assert "Traceback" not in out.stderr
