"""Where the operator finds its apiserver and credentials, without the `kubernetes` package.

`kubernetes.config` alone costs ~20 MiB of RSS for what amounts to reading two files, so
this module resolves the same sources in the same order (explicit kubeconfig, in-cluster
service account, $KUBECONFIG, ~/.kube/config) with the stdlib. YAML is imported only when
a kubeconfig file is actually parsed, so an in-cluster operator never pays for it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic_operator.kube.errors import ConfigError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class ClusterConfig:
    """Everything needed to open an authenticated connection to one apiserver."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    token: str | None = None
    # Re-read when it changes: projected service-account tokens rotate under a running pod.
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    username: str | None = None
    password: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    context_name: str | None = None
    namespace: str | None = None
    #: An HTTP(S) proxy to reach the apiserver through (kubeconfig `proxy-url`).
    proxy_url: str | None = None
    #: When the credentials stop working (epoch seconds), if they are short-lived.
    expires_at: float | None = None
    #: Returns a config with renewed credentials (an exec plugin run again); the client calls
    #: it shortly before `expires_at` and after a 401.
    refresh: Callable[[], ClusterConfig] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        # Never print secrets into logs or tracebacks.
        return (
            f"ClusterConfig(server={self.server!r}, context_name={self.context_name!r}, "
            f"auth={self.auth_kind!r}, insecure={self.insecure!r})"
        )

    @property
    def auth_kind(self) -> str:
        if self.token is not None or self.token_file is not None:
            return "token"
        if self.cert_file is not None or self.cert_data is not None:
            return "client-cert"
        if self.username is not None:
            return "basic"
        return "none"


def load_config(*, kubeconfig: str | None = None, context: str | None = None) -> ClusterConfig:
    """Resolve cluster access like client-go: explicit file, in-cluster, $KUBECONFIG, ~/.kube/config."""
    if kubeconfig:
        return load_kubeconfig([kubeconfig], context=context)
    if context is None and _in_cluster_available():
        return load_incluster_config()
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [p for p in env.split(os.pathsep) if p]
        if any(os.path.exists(p) for p in paths):
            return load_kubeconfig(paths, context=context)
    default = os.path.join(os.path.expanduser("~"), ".kube", "config")
    if os.path.exists(default):
        return load_kubeconfig([default], context=context)
    raise ConfigError(
        "no cluster configuration: not in a cluster (KUBERNETES_SERVICE_HOST unset or no "
        "service-account token), $KUBECONFIG unset and ~/.kube/config missing"
    )


def _in_cluster_available() -> bool:
    return bool(
        os.environ.get("KUBERNETES_SERVICE_HOST")
        and os.environ.get("KUBERNETES_SERVICE_PORT")
        and os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token"))
    )


def load_incluster_config(*, sa_dir: str | None = None) -> ClusterConfig:
    """The pod's service account: token and CA mounted by the kubelet, apiserver from env."""
    sa_dir = SERVICE_ACCOUNT_DIR if sa_dir is None else sa_dir
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("in-cluster config needs KUBERNETES_SERVICE_HOST and _PORT")
    token_file = os.path.join(sa_dir, "token")
    if not os.path.exists(token_file):
        raise ConfigError(f"in-cluster config: {token_file} does not exist")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ca = os.path.join(sa_dir, "ca.crt")
    ns_file = os.path.join(sa_dir, "namespace")
    namespace = None
    if os.path.exists(ns_file):
        with open(ns_file, encoding="utf-8") as f:
            namespace = f.read().strip() or None
    return ClusterConfig(
        server=f"https://{host}:{port}",
        ca_file=ca if os.path.exists(ca) else None,
        token_file=token_file,
        context_name="in-cluster",
        namespace=namespace,
    )


def load_kubeconfig(paths: list[str], *, context: str | None = None) -> ClusterConfig:
    """Merge kubeconfig files (first definition of a name wins, as kubectl does) and resolve."""
    import yaml

    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    origin: dict[tuple[str, str], str] = {}
    found = False
    for raw in paths:
        path = os.path.expanduser(raw)
        if not os.path.exists(path):
            continue
        found = True
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read kubeconfig {path}: {e}") from e
        if not isinstance(doc, dict):
            raise ConfigError(f"kubeconfig {path} is not a mapping")
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in doc.get(section) or []:
                if not isinstance(entry, dict) or "name" not in entry:
                    continue
                name = str(entry["name"])
                if name not in merged[section]:
                    merged[section][name] = entry.get(inner) or {}
                    origin[(section, name)] = path
    if not found:
        raise ConfigError(f"kubeconfig not found: {', '.join(paths)}")

    ctx_name = context or current
    if not ctx_name:
        raise ConfigError("kubeconfig has no current-context and no context was given")
    ctx = merged["contexts"].get(ctx_name)
    if ctx is None:
        raise ConfigError(f"context {ctx_name!r} not found in kubeconfig")
    cluster_name = ctx.get("cluster")
    cluster = merged["clusters"].get(cluster_name)
    if cluster is None:
        raise ConfigError(f"context {ctx_name!r} refers to unknown cluster {cluster_name!r}")
    user_name = ctx.get("user")
    user: Mapping[str, Any] = merged["users"].get(user_name) or {}
    if user_name and user_name not in merged["users"]:
        raise ConfigError(f"context {ctx_name!r} refers to unknown user {user_name!r}")
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(
            f"user {user_name!r} uses an exec/auth-provider credential plugin, which the "
            "operator does not support; use a token or client certificate"
        )

    cluster_base = os.path.dirname(os.path.abspath(origin[("clusters", cluster_name)]))
    user_base = (
        os.path.dirname(os.path.abspath(origin[("users", user_name)]))
        if user_name
        else cluster_base
    )
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster {cluster_name!r} has no server")

    return ClusterConfig(
        server=str(server).rstrip("/"),
        ca_file=_path(cluster.get("certificate-authority"), cluster_base),
        ca_data=_b64(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        token=user.get("token") or None,
        token_file=_path(user.get("tokenFile"), user_base),
        cert_file=_path(user.get("client-certificate"), user_base),
        key_file=_path(user.get("client-key"), user_base),
        cert_data=_b64(user.get("client-certificate-data"), "client-certificate-data"),
        key_data=_b64(user.get("client-key-data"), "client-key-data"),
        username=user.get("username") or None,
        password=user.get("password") or None,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=cluster.get("proxy-url") or None,
        context_name=ctx_name,
        namespace=ctx.get("namespace") or None,
    )


def _path(value: Any, base: str) -> str | None:
    # kubeconfig paths are relative to the file that declares them.
    if not value:
        return None
    p = os.path.expanduser(str(value))
    return p if os.path.isabs(p) else os.path.join(base, p)


def _b64(value: Any, what: str) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError as e:
        raise ConfigError(f"kubeconfig {what} is not valid base64") from e
