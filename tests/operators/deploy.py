"""Deploys the third-party test operators into a test namespace, scoped to given namespaces.

The manifests in deploy/test-operators/<name>/local are the ones a person applies by hand; a
test gets its own copy of one: moved into the test's namespace, with its own
ClusterRoleBinding, its own loopback ports (the pods share the node's network, so two copies
must not collide), an optional memory limit, and a namespace scope, because only one operator
may act on a namespace at a time. How the scope is expressed is each operator's own:

- kopf-sessions: kopf's `--namespace=GLOBS` (kopf has no namespace label selector);
- client-sessions, go-informer: env WATCH_NAMESPACES (globs) and/or NAMESPACE_SELECTOR (labels).

The images and venvs come from cluster/test-operators.sh (run by `make image`).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import REPO, kubectl
from tests.manifests import apply_all, into_namespace, kustomized
from tests.processes import free_port

OPERATORS = ("kopf-sessions", "client-sessions", "go-informer")
MANIFESTS = REPO / "deploy" / "test-operators"
#: What each acknowledges a new session with (its status condition's reason).
ACK_REASONS = {
    "kopf-sessions": "AcknowledgedByKopf",
    "client-sessions": "AcknowledgedByClientSessions",
    "go-informer": "AcknowledgedByGoInformer",
}


@dataclass(frozen=True)
class Deployed:
    """One test operator running in `namespace` (Deployment and container named `name`)."""

    name: str
    namespace: str
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def binding(self) -> str:
        return f"triage-{self.name}-{self.namespace}"

    def health(self, timeout: float = 5) -> dict[str, Any]:
        """The operator's /healthz JSON (hostNetwork: it listens on the node's loopback)."""
        url = f"http://127.0.0.1:{self.ports['health']}/healthz"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return dict(json.loads(r.read()))

    def pod(self) -> dict[str, Any]:
        """The newest pod of the Deployment that is not being deleted."""
        pods = json.loads(
            kubectl("-n", self.namespace, "get", "pods", "-l", f"app={self.name}", "-o", "json")
        )["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if not live:
            raise LookupError(f"no pod of {self.name} in {self.namespace}")
        return dict(max(live, key=lambda p: p["metadata"]["creationTimestamp"]))


def _set_env(container: dict[str, Any], env: dict[str, str]) -> None:
    entries = container.setdefault("env", [])
    for k, v in env.items():
        for e in entries:
            if e["name"] == k:
                e.clear()
                e.update({"name": k, "value": v})
                break
        else:
            entries.append({"name": k, "value": v})


def _scope_kopf(c: dict[str, Any], globs: str, selector: str, health: int) -> None:
    if selector:
        raise ValueError("kopf selects namespaces by name globs only, not by labels")
    cmd = [a for a in c["command"] if a not in {"--all-namespaces", "-A"}]
    cmd = [
        f"--liveness=http://127.0.0.1:{health}/healthz" if a.startswith("--liveness=") else a
        for a in cmd
    ]
    cmd.append(f"--namespace={globs}" if globs else "--all-namespaces")
    c["command"] = cmd


def render(
    name: str,
    namespace: str,
    *,
    ports: dict[str, int],
    globs: str = "",
    selector: str = "",
    env: dict[str, str] | None = None,
    memory_limit: str | None = None,
) -> list[dict[str, Any]]:
    """The local overlay of operator `name`, moved into `namespace` and scoped."""
    if name not in OPERATORS:
        raise ValueError(f"unknown test operator {name!r}; one of {OPERATORS}")

    def edit(doc: dict[str, Any]) -> None:
        c = doc["spec"]["template"]["spec"]["containers"][0]
        health = ports["health"]
        if name == "kopf-sessions":
            _scope_kopf(c, globs, selector, health)
        else:
            scoped = {"WATCH_NAMESPACES": globs, "NAMESPACE_SELECTOR": selector}
            _set_env(c, {"HEALTH_ADDR": f"127.0.0.1:{health}", **scoped})
        if "pprof" in ports:
            _set_env(c, {"PPROF_PORT": str(ports["pprof"])})
        _set_env(c, env or {})
        c["ports"] = [{"name": "health", "containerPort": health}]
        c["livenessProbe"]["httpGet"]["port"] = health
        if memory_limit:
            c["resources"]["limits"]["memory"] = memory_limit

    return into_namespace(
        kustomized(MANIFESTS / name / "local"),
        namespace,
        binding=f"triage-{name}-{namespace}",
        drop={"Namespace"},
        deployment=edit,
    )


def deploy(
    name: str,
    namespace: str,
    *,
    globs: str = "",
    selector: str = "",
    env: dict[str, str] | None = None,
    memory_limit: str | None = None,
    wait: bool = True,
) -> Deployed:
    """Apply test operator `name` into `namespace`, acting on the namespaces that match
    `globs` and/or `selector` (all namespaces when both are empty: avoid that on a shared
    cluster)."""
    ports = {"health": free_port()}
    if name == "go-informer":
        ports["pprof"] = free_port()
    docs = render(
        name,
        namespace,
        ports=ports,
        globs=globs,
        selector=selector,
        env=env,
        memory_limit=memory_limit,
    )
    apply_all(docs)
    deployed = Deployed(name, namespace, ports)
    if wait:
        kubectl("-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=180s")
    return deployed


def undeploy(deployed: Deployed) -> None:
    """Remove the copy's cluster-scoped binding and its Deployment (the namespace is the
    caller's)."""
    kubectl("delete", "clusterrolebinding", deployed.binding, "--ignore-not-found", check=False)
    kubectl(
        "-n",
        deployed.namespace,
        "delete",
        "deployment",
        deployed.name,
        "--ignore-not-found",
        "--wait=false",
        check=False,
    )
