"""triage.restore on the real apiserver: exact, idempotent, and fair to other writers.

Hypothesis generates Deployment shapes with every kind of presence/absence the upstream
script got wrong (limits and requests present or absent, env entries with value or
valueFrom, capabilities, volumes, annotations); a run is interrupted after a random prefix
of its changes; `restore` must bring the spec back field for field, and be idempotent.
Another writer's change during the run survives the restore; where both touched a field,
theirs is kept and reported.
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

from agentic_operator.resources import DEPLOYMENTS
from tests.conftest import KUBECONFIG, REPO, kubectl
from triage.cluster import Cluster, connect
from triage.journal import Journal
from triage.patch import RunPatch, apply, patched_spec
from triage.profiling import Factory, Settings
from triage.reproduce import UNPROFILED_ANNOTATION
from triage.restore import restore
from triage.rundir import RunWriter
from triage.target import Target

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
        st.sampled_from(["A", "B", "ENABLE_PPROF", "AGENTIC_CACHE_MODE", "LOG"]),
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


def _deployment(app: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    """A Deployment named agentic-operator whose pods carry the label app=`app`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agentic-operator"},
        "spec": {
            "replicas": 0,  # no pods: the tests are about the object, and pods would cost minutes
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": containers}},
        },
    }


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
    doc = _deployment("agentic-operator", [container])
    if volumes:
        doc["spec"]["template"]["spec"]["volumes"] = volumes
    meta = doc["metadata"]
    meta["labels"] = {"app": "agentic-operator"}
    annotations = draw(
        st.dictionaries(
            st.sampled_from(["team", "owner", "note"]), st.text("xyz", max_size=3), max_size=2
        )
    )
    if annotations:
        meta["annotations"] = annotations
    return doc


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
    created: dict[str, Any] = cluster.client.create(DEPLOYMENTS.path(namespace), body)
    return created


def run_spec(
    cluster: Cluster, run_dir: Path, original: dict[str, Any], *, profile: str,
    mem_limit: int, extra_env: dict[str, str] | None = None, container: str = "agentic-operator",
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The spec a run would apply, through the same profiler code the run uses."""
    target = Target(namespace="ns", deployment="agentic-operator", container=container,
                    command=["/venv/bin/python", "-m", "op"], interpreter="/venv/bin/python")  # fmt: skip
    profiler = Factory(Settings(kind=profile)).build(
        cluster, run=RunWriter(run_dir / "scratch", run_id="t"), target=target
    )
    try:
        return patched_spec(
            original,
            RunPatch(
                mem_limit_bytes=mem_limit,
                container=container,
                extra_env=extra_env or {},
                pod_annotations=pod_annotations or {},
            ),
            profile=lambda s: profiler.modify(s, planned_sessions=1000),
        )
    finally:
        profiler.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=deployment_shapes(),
    profile=st.sampled_from(["memray", "py-spy", "pprof", "none"]),
    extra_env=st.dictionaries(
        st.sampled_from(["AGENTIC_CACHE_MODE", "A", "NAMESPACE"]),
        st.sampled_from(["full", "x"]),
        max_size=2,
    ),
    cut=st.integers(min_value=0, max_value=8),
    restore_twice=st.booleans(),
    # The spec memray's fixed cost is read under carries a pod template annotation.
    fresh_pod=st.booleans(),
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
    fresh_pod: bool,
) -> None:
    path = DEPLOYMENTS.path(namespace, "agentic-operator")
    with contextlib.suppress(Exception):
        cluster.client.delete(path)
    _wait_gone(cluster, path)
    before = _create(cluster, namespace, shape)
    run_dir = tmp_path_factory.mktemp("run")
    journal = Journal.create(run_dir, cluster=cluster, deployment=before)
    target = run_spec(cluster, run_dir, journal.original_spec, profile=profile,
                      mem_limit=96 * 2**20, extra_env=extra_env,
                      pod_annotations={UNPROFILED_ANNOTATION: "t"} if fresh_pod else None)  # fmt: skip
    journal.record("patch", spec=target)
    steps = _json_patch_steps(journal.original_spec, target)
    for ops in steps[:cut]:
        cluster.client.patch(path, ops, patch_type="json")

    assert restore(cluster, journal, wait=False).status in {"restored", "already-restored"}
    after = cluster.client.get(path)
    assert after["spec"] == before["spec"]
    assert (after["metadata"].get("annotations") or {}).get("team") == (
        before["metadata"].get("annotations") or {}
    ).get("team")
    if restore_twice:
        again = restore(cluster, Journal.load(run_dir), wait=False)
        assert again.status == "already-restored" and not again.conflicts


def _wait_gone(cluster: Cluster, path: str) -> None:
    import time

    for _ in range(100):
        if cluster.client.get_or_none(path) is None:
            return
        time.sleep(0.1)


_TWO_CONTAINERS = _deployment(
    "x",
    [
        {"name": "proxy", "image": "localhost/ambient-runner:dev"},
        {
            "name": "agentic-operator",
            "image": "localhost/agentic-operator:dev",
            "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "env": [
                {"name": "LOG", "value": "info"},
                {"name": "GOMEMLIMIT", "value": "400MiB"},
            ],
        },
    ],
)


def _run_on_two_containers(
    cluster: Cluster, namespace: str, run_dir: Path, *, profile: str
) -> tuple[dict[str, Any], Journal]:
    """_TWO_CONTAINERS as created, and the journal of a run (128 MiB, the full cache) that
    patched it with `profile`'s changes."""
    before = _create(cluster, namespace, _TWO_CONTAINERS)
    journal = Journal.create(run_dir, cluster=cluster, deployment=before)
    spec = run_spec(cluster, run_dir, journal.original_spec, profile=profile,
                    mem_limit=128 * 2**20, extra_env={"AGENTIC_CACHE_MODE": "full"})  # fmt: skip
    apply(cluster, journal, spec, timeout=60, details={})
    return before, journal


def test_run_patch_sets_limit_request_env_and_the_profilers_changes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    before, journal = _run_on_two_containers(cluster, namespace, tmp_path, profile="pprof")
    path = DEPLOYMENTS.path(namespace, "agentic-operator")
    pod = cluster.client.get(path)["spec"]["template"]["spec"]
    proxy, c = pod["containers"]
    assert proxy == before["spec"]["template"]["spec"]["containers"][0]  # untouched
    assert c["resources"] == {"limits": {"memory": "128Mi"}, "requests": {"memory": "128Mi"}}
    env = {e["name"]: e.get("value") for e in c["env"]}
    # GOMEMLIMIT keeps its ratio to the limit (400MiB of 512Mi -> 100MiB of 128Mi).
    assert env == {"LOG": "info", "GOMEMLIMIT": "100MiB", "ENABLE_PPROF": "true",
                   "AGENTIC_CACHE_MODE": "full"}  # fmt: skip
    steps = [s["step"] for s in Journal.load(tmp_path).steps]
    assert steps == ["patch", "patched"]
    assert restore(cluster, journal, wait=False).status == "restored"
    assert cluster.client.get(path)["spec"] == before["spec"]


def test_restore_keeps_what_another_writer_changed(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """An Argo CD-style revert of the limit, a scale and an env edit during the run: the
    restore takes back only triage's changes; where both changed a field, theirs stays."""
    _, journal = _run_on_two_containers(cluster, namespace, tmp_path, profile="py-spy")
    path = DEPLOYMENTS.path(namespace, "agentic-operator")
    live = cluster.client.get(path)
    live["spec"]["replicas"] = 2
    c = live["spec"]["template"]["spec"]["containers"][1]
    c["resources"]["limits"]["memory"] = "384Mi"  # the other writer's limit
    c["env"].insert(0, {"name": "THEIRS", "value": "1"})
    cluster.client.replace(path, live)

    result = restore(cluster, journal, wait=False)
    after = cluster.client.get(path)["spec"]
    assert after["replicas"] == 2
    c = after["template"]["spec"]["containers"][1]
    assert c["resources"]["limits"]["memory"] == "384Mi"
    env = [e["name"] for e in c["env"]]
    assert env == ["THEIRS", "LOG", "GOMEMLIMIT"]  # theirs kept, triage's own gone
    assert c["resources"]["requests"]["memory"] == "256Mi"  # triage's lowered request undone
    assert "shareProcessNamespace" not in after["template"]["spec"]
    assert [x["name"] for x in after["template"]["spec"]["containers"]] == [
        "proxy",
        "agentic-operator",
    ]
    assert [k.path for k in result.conflicts] == [
        "template.spec.containers[name=agentic-operator].resources.limits.memory"
    ]
    assert "replicas" in result.others
    assert "the other writer's value was kept" in result.message
    recorded = Journal.load(tmp_path).steps[-1]
    assert recorded["step"] == "restore" and recorded["conflicts"][0]["now"] == "384Mi"


def test_restore_command_after_kill_is_idempotent_and_refuses_a_recreated_object(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    doc = _deployment("y", [{"name": "c", "image": "localhost/agentic-operator:dev"}])
    before = _create(cluster, namespace, doc)
    journal = Journal.create(tmp_path, cluster=cluster, deployment=before)
    spec = run_spec(cluster, tmp_path, journal.original_spec, profile="py-spy",
                    mem_limit=64 * 2**20, container="c")  # fmt: skip
    journal.record("patch", spec=spec)
    path = DEPLOYMENTS.path(namespace, "agentic-operator")
    # What a killed run leaves behind: the run's spec in place, nobody left to restore it.
    cluster.client.patch(path, {"spec": spec})

    def triage_restore() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / ".venv" / "bin" / "triage"), "restore", str(tmp_path), "--no-wait"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = triage_restore()
    assert first.returncode == 0, first.stderr
    assert "triage's changes were taken back" in first.stderr
    assert cluster.client.get(path)["spec"] == before["spec"]
    second = triage_restore()
    assert second.returncode == 0 and "already matched" in second.stderr

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
