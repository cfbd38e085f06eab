"""Cluster access for the triage CLI: one kubeconfig, one context, one shared connection pool.

The `kubernetes` package resolves kubeconfig, contexts and credentials (the CLI has no memory
budget, unlike the operator). Requests themselves go out as raw JSON over a single urllib3
pool: bulk load creates thousands of objects per second, and the generated models would
spend most of that time building and parsing Python objects nobody reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3

from triage.errors import PreflightError


class ApiError(Exception):
    """The apiserver answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409 and self.reason != "AlreadyExists"


def _error_from(status: int, data: bytes) -> ApiError:
    try:
        doc = json.loads(data[:65536])
        return ApiError(status, str(doc.get("reason", "")), str(doc.get("message", "")))
    except ValueError:
        return ApiError(status, "", data[:200].decode("utf-8", "replace"))


@dataclass
class Cluster:
    """A connected cluster: where it is, what it is, and how to talk to it."""

    context: str
    server: str
    kubeconfig: str | None
    kind: str  # "local" | "kind" | "other"
    api: Any  # kubernetes.client.ApiClient, for the few calls that want the official client
    _headers: dict[str, str] = field(default_factory=dict, repr=False)
    _pool_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    _pool: urllib3.PoolManager | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_pool_size(self, n: int) -> None:
        """Size the shared pool for `n` concurrent callers (creates it anew)."""
        with self._lock:
            old, self._pool = (
                self._pool,
                urllib3.PoolManager(maxsize=max(n, 1), block=True, **self._pool_kwargs),
            )
        if old is not None:
            old.clear()

    @property
    def pool(self) -> urllib3.PoolManager:
        if self._pool is None:
            self.set_pool_size(16)
        assert self._pool is not None
        return self._pool

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> tuple[int, bytes]:
        """One request, no exception for an HTTP error status: the bulk-load fast path."""
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        resp = self.pool.request(
            method,
            self.server + path,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=10, read=timeout),
            retries=False,
        )
        return resp.status, resp.data

    def json(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Any:
        """A JSON request; raises ApiError on an error status."""
        if params:
            path = f"{path}?{urlencode(params)}"
        payload = None if body is None else json.dumps(body).encode()
        try:
            status, data = self.raw(
                method, path, body=payload, content_type=content_type, timeout=timeout
            )
        except urllib3.exceptions.HTTPError as e:
            raise PreflightError(f"cannot reach the apiserver at {self.server}: {e}") from e
        if status >= 400:
            raise _error_from(status, data)
        return json.loads(data) if data else None


def _context_kind(context: str, server: str) -> str:
    if context == "triage-local":
        return "local"
    if context.startswith("kind-") and ("127.0.0.1" in server or "localhost" in server):
        return "kind"
    return "other"


def connect(*, kubeconfig: str | None, context: str | None, check: bool = True) -> Cluster:
    """Resolve the kubeconfig and context, build the pool, and (by default) check /readyz."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig
    if path is not None and not Path(path).exists():
        raise PreflightError(
            f"kubeconfig {path} does not exist; pass --kubeconfig PATH or set KUBECONFIG"
        )
    cfg = client.Configuration()
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        chosen = active
        if context is not None:
            matches = [c for c in contexts if c["name"] == context]
            if not matches:
                names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
                raise PreflightError(
                    f"context {context!r} is not in the kubeconfig; known contexts: {names}"
                )
            chosen = matches[0]
        config.load_kube_config(config_file=path, context=chosen["name"], client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException as e:
        raise PreflightError(f"cannot load kubeconfig: {e}; pass --kubeconfig PATH") from e
    server = str(cfg.host).rstrip("/")
    headers = {"Accept": "application/json", "User-Agent": "triage/0.1"}
    token = cfg.auth_settings().get("BearerToken", {}).get("value")
    if token:
        headers["Authorization"] = str(token)
    elif cfg.username:
        headers.update(urllib3.make_headers(basic_auth=f"{cfg.username}:{cfg.password}"))
    pool_kwargs: dict[str, Any] = {}
    if server.startswith("https"):
        if cfg.verify_ssl:
            pool_kwargs.update(cert_reqs="CERT_REQUIRED", ca_certs=cfg.ssl_ca_cert)
        else:
            pool_kwargs["cert_reqs"] = "CERT_NONE"
        if cfg.cert_file:
            pool_kwargs.update(cert_file=cfg.cert_file, key_file=cfg.key_file)
    name = str(chosen["name"])
    cluster = Cluster(
        context=name,
        server=server,
        kubeconfig=path,
        kind=_context_kind(name, server),
        api=client.ApiClient(cfg),
        _headers=headers,
        _pool_kwargs=pool_kwargs,
    )
    if check:
        try:
            status, data = cluster.raw("GET", "/readyz", timeout=10)
        except urllib3.exceptions.HTTPError as e:
            raise PreflightError(
                f"cluster {name!r} at {server} is unreachable: {e.__class__.__name__}"
            ) from e
        if status != 200:
            raise PreflightError(
                f"cluster {name!r} at {server} is not ready: HTTP {status} {data[:100]!r}"
            )
    return cluster
