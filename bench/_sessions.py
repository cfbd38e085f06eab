"""The benchmarks' session loader: sessions written the way the platform writes them.

Create, then status through the status subresource, with many threads over one connection
pool, in namespaces labelled managed (and owned by the benchmark, so a run finds and
deletes its own). Split out of operator_memory.py, whose benchmarks (operator_scale,
operator_sync, operator_vs_kopf) share it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agentic_operator import _objects as objs  # noqa: E402
from agentic_operator.contract import (  # noqa: E402
    AGENTIC_SESSIONS,
    API_VERSION,
    MANAGED_LABEL,
    PROJECT_SETTINGS,
    PROJECT_SETTINGS_NAME,
    RUNNER_APP_LABEL,
    RUNNER_SECRETS_NAME,
    SESSION_LABEL,
    pod_name,
)
from agentic_operator.kube import (  # noqa: E402
    AlreadyExistsError,
    ApiError,
    ConflictError,
    KubeClient,
    load_config,
)

BENCH_LABEL = "agentic-bench/owned"
RUNNER_IMAGE = "localhost/ambient-runner:dev"
PER_NS = 10


# -- loader --------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _session(ns: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": AGENTIC_SESSIONS.kind,
        "metadata": {"name": name, "namespace": ns, "labels": {BENCH_LABEL: "true"}, **metadata},
        "spec": spec,
    }


def minimal_body(ns: str, name: str) -> dict[str, Any]:
    """The smallest session upstream's reproducer makes: a display name and a one-line prompt."""
    return _session(ns, name, {"displayName": f"repro {name}", "initialPrompt": "echo hello"})


def session_body(ns: str, name: str) -> dict[str, Any]:
    """About 3 KB of JSON once stored, like a real session (prompt, repos, settings)."""
    prompt = ("Refactor the payment module and add tests for the edge cases. " * 24)[:1500]
    spec = {
        "initialPrompt": prompt,
        "displayName": f"Bench session {name}",
        "repos": [{"url": f"https://github.com/example/{name}.git", "branch": "main"}],
        "llmSettings": {"model": "claude-sonnet-4-5"},
        "userContext": {"userId": "u-123", "displayName": "Bench User", "groups": ["devs"]},
        "environmentVariables": {"RUNNER_TYPE": "claude-agent-sdk", "LOG_LEVEL": "info"},
    }
    annotations = {"ambient-code.io/created-by": "bench-user@example.com"}
    return _session(ns, name, spec, annotations=annotations)


def _conditions(ready: bool, reason: str) -> list[dict[str, Any]]:
    now = _now()
    types = ["SecretsReady", "PodCreated", "PodScheduled", "RunnerStarted", "Reconciled", "Ready"]
    return [
        {
            "type": t,
            "status": "True" if (ready or t != "Ready") else "False",
            "reason": reason if t == "Ready" else "Done",
            "message": f"{t} message for the benchmark",
            "lastTransitionTime": now,
            "observedGeneration": 1,
        }
        for t in types
    ]


def status_for(phase: str, generation: int) -> dict[str, Any]:
    now = _now()
    st: dict[str, Any] = {
        "phase": phase,
        "startTime": now,
        "observedGeneration": generation,
        "conditions": _conditions(phase == "Running", phase),
        "sdkSessionId": "5f0c1c8e-bench-sdk-session",
    }
    if phase != "Running":
        st["completionTime"] = now
    return st


class Loader:
    def __init__(self, kube: KubeClient, *, threads: int = 24) -> None:
        self.kube = kube
        self.threads = threads

    @classmethod
    def connect(cls, kubeconfig: str, *, threads: int = 24) -> Loader:
        """A loader over a client of its own, which the caller closes (`loader.kube.close()`)."""
        kube = KubeClient(load_config(kubeconfig=kubeconfig), max_connections=threads + 4)
        return cls(kube, threads=threads)

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads)

    def namespaces(self, prefix: str, count: int) -> list[str]:
        """Create (or reuse) namespaces, not yet managed: see `manage`."""
        names = [f"{prefix}-{i:04d}" for i in range(count)]

        def ensure(ns: str) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {BENCH_LABEL: "true"}},
            }
            self.kube.create_or_exists("/api/v1/namespaces", body)
            # A ready ProjectSettings, as a cluster the operator has run on before has.
            ps = {
                "apiVersion": API_VERSION,
                "kind": PROJECT_SETTINGS.kind,
                "metadata": {
                    "name": PROJECT_SETTINGS_NAME,
                    "namespace": ns,
                    "labels": {MANAGED_LABEL: "true"},
                },
                "spec": {"groupAccess": []},
            }
            try:
                stored = self.kube.create(PROJECT_SETTINGS.path(ns), ps)
                stored["status"] = {
                    "groupBindingsCreated": 0,
                    "scheduledSessionRBACReady": True,
                    "limitRangeReady": True,
                }
                self.kube.replace(
                    PROJECT_SETTINGS.path(ns, PROJECT_SETTINGS_NAME, "status"), stored
                )
            except AlreadyExistsError:
                pass

        with self._pool() as pool:
            list(pool.map(ensure, names))
        return names

    def manage(self, namespaces: list[str], *, managed: bool = True) -> None:
        """Label the namespaces managed only once their sessions are in their final state.

        Any operator running in the cluster (ours under test or another one) then sees
        finished sessions, never a fresh Pending one it would start a runner pod for.
        """
        label = {MANAGED_LABEL: "true" if managed else None}

        def patch(ns: str) -> None:
            self.kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": label}})

        with self._pool() as pool:
            list(pool.map(patch, namespaces))

    def sessions(
        self,
        namespaces: list[str],
        *,
        per_ns: int,
        phase: str,
        with_pods: bool = False,
        minimal: bool = False,
    ) -> int:
        """Create sessions and write their status; `minimal`: bare shape, status {phase}."""
        jobs = [(ns, f"s-{i:03d}") for ns in namespaces for i in range(per_ns)]
        body_of = minimal_body if minimal else session_body

        def ensure(job: tuple[str, str]) -> int:
            ns, name = job
            path = AGENTIC_SESSIONS.path(ns)
            try:
                obj = self.kube.create(path, body_of(ns, name))
            except AlreadyExistsError:
                obj = self.kube.get(f"{path}/{name}")
                if (obj.get("status") or {}).get("phase") == phase:
                    if with_pods:
                        self._pod(ns, name, obj)
                    return 0
            for _ in range(10):
                obj["status"] = (
                    {"phase": phase}
                    if minimal
                    else status_for(phase, int(obj["metadata"].get("generation") or 1))
                )
                try:
                    self.kube.replace(f"{path}/{name}/status", obj)
                    break
                except ConflictError:
                    obj = self.kube.get(f"{path}/{name}")
            if with_pods:
                self._pod(ns, name, obj)
            return 1

        with self._pool() as pool:
            return sum(pool.map(ensure, jobs))

    def _pod(self, ns: str, name: str, session: dict[str, Any]) -> None:
        # A real runner pod object that can never be scheduled: cached and reconciled like
        # any runner pod, without a thousand containers on the benchmark machine.
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(name),
                "namespace": ns,
                "labels": {"app": RUNNER_APP_LABEL, SESSION_LABEL: name, BENCH_LABEL: "true"},
                "ownerReferences": [objs.owner_reference(session, kind=AGENTIC_SESSIONS.kind)],
            },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"agentic-bench/never": "true"},
                "containers": [{"name": objs.RUNNER_CONTAINER, "image": RUNNER_IMAGE}],
            },
        }
        self.kube.create_or_exists(f"/api/v1/namespaces/{ns}/pods", body)
        # What the operator makes for a session it started, so the cluster it lists and
        # watches holds them as it would in production (none of them is cached).
        k = self.kube
        k.create_or_exists(
            f"/api/v1/namespaces/{ns}/serviceaccounts", objs.runner_service_account(session)
        )
        k.create_or_exists(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", objs.runner_role(session)
        )
        k.create_or_exists(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            objs.runner_role_binding(session),
        )
        k.create_or_exists(
            f"/api/v1/namespaces/{ns}/secrets",
            objs.runner_token_secret(session, token="bench-token-" + name, refreshed_at=_now()),
        )
        # No Service: the local cluster's service range (a /24) has 254 ClusterIPs, fewer
        # than the sessions here; the operator neither caches nor reads Services anyway.

    def runner_secrets(self, namespaces: list[str]) -> None:
        """The prerequisite Secret each project holds before its sessions can start."""

        def ensure(ns: str) -> None:
            self.kube.create_or_exists(
                f"/api/v1/namespaces/{ns}/secrets",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": RUNNER_SECRETS_NAME, "namespace": ns},
                    "stringData": {"ANTHROPIC_API_KEY": "bench-placeholder"},
                },
            )

        with self._pool() as pool:
            list(pool.map(ensure, namespaces))

    def cleanup(self, prefixes: tuple[str, ...], *, purge: bool = False) -> int:
        """Delete bench objects and unmanage the namespaces (kept for reuse unless `purge`).

        Emptied, unlabelled namespaces cost other operators nothing; keeping them lets the
        next run reuse them instead of waiting for namespace deletion.
        """
        listing = self.kube.list("/api/v1/namespaces", params={"labelSelector": BENCH_LABEL})
        names = [
            n["metadata"]["name"]
            for n in listing.get("items", [])
            if n["metadata"]["name"].startswith(prefixes)
        ]

        def wipe(ns: str) -> None:
            for path in (
                AGENTIC_SESSIONS.path(ns),
                PROJECT_SETTINGS.path(ns),
                f"/api/v1/namespaces/{ns}/pods",
                f"/api/v1/namespaces/{ns}/secrets",
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            ):
                with contextlib.suppress(ApiError):
                    self.kube.delete(path, params={"gracePeriodSeconds": "0"})
            try:
                self.kube.patch(
                    f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {MANAGED_LABEL: None}}}
                )
                if purge:
                    self.kube.delete(f"/api/v1/namespaces/{ns}")
            except ApiError:
                pass

        with self._pool() as pool:
            list(pool.map(wipe, names))
        return len(names)
