"""Resources as values that build their own URLs (kopf's `structs/references.py` is the model).

A path assembled by hand in a dozen places is a path spelled a dozen ways: `/api` against
`/apis`, a forgotten namespace segment, a subresource on a collection. A `Resource` knows its
group, version, plural and whether it is namespaced, and is the one place that turns them
into a URL; the few resources the operator and triage touch are declared here once. Stdlib
only, outside the client package, so the offline report side can import the contract that
uses it without pulling in an HTTP stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "CONFIG_MAPS",
    "DEPLOYMENTS",
    "EVENTS",
    "LEASES",
    "LIMIT_RANGES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "ROLES",
    "ROLE_BINDINGS",
    "SECRETS",
    "SERVICES",
    "SERVICE_ACCOUNTS",
    "Resource",
    "api_path",
]


def api_path(
    *,
    group: str = "",
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """Build a resource URL path: core group under /api, everything else under /apis."""
    parts = ["/api", version] if not group else ["/apis", group, version]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        if name is None:
            raise ValueError("a subresource needs a name")
        parts.append(subresource)
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource type: `PODS.path("ns", "name", "log")`."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`plural.group` as CRD names and RBAC rules spell it (`pods` for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(
        self,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The collection (no name) or object URL; no namespace means across all of them."""
        if namespace is not None and not self.namespaced:
            raise ValueError(f"{self.plural} is cluster-scoped; it takes no namespace")
        return api_path(
            group=self.group,
            version=self.version,
            plural=self.plural,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )


PODS = Resource("", "v1", "pods", "Pod")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
SERVICES = Resource("", "v1", "services", "Service")
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
LIMIT_RANGES = Resource("", "v1", "limitranges", "LimitRange")
EVENTS = Resource("", "v1", "events", "Event")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
