"""The cluster a triage command works on: any kubeconfig a user has, one shared client.

Resolving a kubeconfig is where real setups differ: exec credential plugins (cloud CLIs,
short-lived client certificates), OIDC auth providers, token files, client certificates,
proxies, several files in KUBECONFIG. The `kubernetes` package's loader handles all of it,
so triage uses it for that part only (the CLI has no memory budget) and turns what it
resolved into the project's own `ClusterConfig`. Every request then goes through the one
`KubeClient` the operator uses too, with a refresher that runs the loader again, so a
credential that expires during a long run is renewed by the client itself.
"""

from __future__ import annotations

import base64
import os
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentic_operator.kube import ClusterConfig, KubeClient, KubeError, TransportError
from triage.errors import PreflightError

#: Where kubectl looks when neither --kubeconfig nor KUBECONFIG says otherwise.
DEFAULT_KUBECONFIG = "~/.kube/config"


@dataclass
class Cluster:
    """A connected cluster: where it is, what kind it is, and the client to talk to it."""

    context: str
    server: str
    kubeconfig: str | None
    kind: str  # "local" | "kind" | "other"
    client: KubeClient

    def kubectl(self) -> list[str]:
        """kubectl pointed at exactly the cluster and context this run uses."""
        args = ["kubectl"]
        if self.kubeconfig:
            args += ["--kubeconfig", self.kubeconfig]
        return [*args, "--context", self.context]

    def close(self) -> None:
        self.client.close()


def context_kind(context: str, server: str) -> str:
    """ "local" (the project's node), "kind" (a kind cluster on this host) or "other"."""
    if context == "triage-local":
        return "local"
    if context.startswith("kind-") and ("127.0.0.1" in server or "localhost" in server):
        return "kind"
    return "other"


def _kubeconfig_paths(kubeconfig: str | None) -> str:
    if kubeconfig is not None:
        if not Path(kubeconfig).exists():
            raise PreflightError(
                f"kubeconfig {kubeconfig} does not exist; pass --kubeconfig PATH or set KUBECONFIG"
            )
        return kubeconfig
    return os.environ.get("KUBECONFIG") or os.path.expanduser(DEFAULT_KUBECONFIG)


def resolve(kubeconfig: str | None, context: str | None) -> ClusterConfig:
    """Run the `kubernetes` loader for `context` and return what it resolved as a config.

    The returned config carries a refresher (this function again) and, for credentials that
    say when they expire, that moment.
    """
    from kubernetes import client
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import _get_kube_config_loader

    paths = _kubeconfig_paths(kubeconfig)
    try:
        loader = _get_kube_config_loader(filename=paths, persist_config=False)  # type: ignore[no-untyped-call]
        names = [str(c["name"]) for c in loader.list_contexts()]
        chosen = context or str(loader.current_context["name"])
        if chosen not in names:
            known = ", ".join(sorted(names)) or "none"
            raise PreflightError(
                f"context {chosen!r} is not in the kubeconfig; known contexts: {known}"
            )
        loader.set_active_context(chosen)
        cfg = client.Configuration()
        loader.load_and_set(cfg)
    except ConfigException as e:
        raise PreflightError(f"cannot load kubeconfig {paths}: {e}; pass --kubeconfig PATH") from e
    user: Any = getattr(loader, "_user", None) or {}
    auth = str(cfg.api_key.get("BearerToken") or "")
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
    username = password = None
    if auth.startswith("Basic "):
        username, _, password = base64.b64decode(auth[len("Basic ") :]).decode().partition(":")
    if "exec" in user and not (token or cfg.cert_file):
        command = shlex.join([str(user["exec"]["command"]), *(user["exec"].safe_get("args") or [])])
        raise PreflightError(
            f"the exec credential plugin of context {chosen!r} ({command}) gave no token or "
            "client certificate; run it by hand to see why"
        )
    expiry = getattr(loader, "expiry", None)
    return ClusterConfig(
        server=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert or None,
        token=token,
        cert_file=cfg.cert_file or None,
        key_file=cfg.key_file or None,
        username=username,
        password=password,
        insecure=not cfg.verify_ssl,
        tls_server_name=getattr(cfg, "tls_server_name", None) or None,
        proxy_url=cfg.proxy or None,
        context_name=chosen,
        expires_at=expiry.timestamp() if isinstance(expiry, datetime) else None,
        refresh=lambda: resolve(kubeconfig, chosen),
    )


def connect(
    *,
    kubeconfig: str | None,
    context: str | None,
    check: bool = True,
    max_connections: int = 16,
) -> Cluster:
    """Resolve the kubeconfig and context, build the client, and (by default) check /readyz."""
    config = resolve(kubeconfig, context)
    name = str(config.context_name)
    try:
        client = KubeClient(config, max_connections=max_connections, user_agent="triage/0.1")
    except KubeError as e:
        raise PreflightError(f"cannot use context {name!r}: {e}") from e
    cluster = Cluster(
        context=name,
        server=config.server,
        kubeconfig=kubeconfig,
        kind=context_kind(name, config.server),
        client=client,
    )
    if check:
        try:
            status, data = client.send("GET", "/readyz", timeout=10)
        except TransportError as e:
            raise PreflightError(f"cluster {name!r} at {config.server} is unreachable: {e}") from e
        except KubeError as e:
            raise PreflightError(f"cluster {name!r} at {config.server}: {e}") from e
        if status != 200:
            raise PreflightError(
                f"cluster {name!r} at {config.server} is not ready: HTTP {status} {data[:100]!r}"
            )
    return cluster
