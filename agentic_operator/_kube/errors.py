"""Typed errors for the operator's own Kubernetes client.

Reconcilers branch on what the apiserver said (a 404 means "already gone", a 409 Conflict
means "re-read and retry"), so the client turns every non-2xx answer into an `ApiError`
that carries the decoded `Status` instead of leaking urllib3 exceptions or raw bytes.
Transport failures get their own type so informers can tell "reconnect and resume" apart
from "the apiserver refused this request".
"""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    """Base class for every error raised by `agentic_operator._kube`."""


class ConfigError(KubeError):
    """No usable cluster configuration (missing kubeconfig, bad context, unreadable file)."""


class TransportError(KubeError):
    """The request never got an HTTP answer: connection refused or reset, TLS, timeout."""


class ApiError(KubeError):
    """The apiserver (or a proxied endpoint) answered with a non-2xx status."""

    status: int
    reason: str
    message: str
    body: dict[str, Any] | None

    def __init__(
        self,
        *,
        status: int,
        reason: str = "",
        message: str = "",
        body: dict[str, Any] | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.method = method
        self.path = path
        where = f" {method} {path}" if method or path else ""
        super().__init__(f"{status} {reason}{where}: {message}".rstrip(": "))

    @classmethod
    def from_status(
        cls, status: int, body: dict[str, Any] | None, *, method: str = "", path: str = ""
    ) -> ApiError:
        """Build from a decoded `Status` object (or None when the body was not JSON)."""
        reason = ""
        message = ""
        if body is not None:
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or "")
        return cls(
            status=status, reason=reason, message=message, body=body, method=method, path=path
        )

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """An optimistic-concurrency failure (stale resourceVersion), not AlreadyExists."""
        return self.status == 409 and self.reason != "AlreadyExists"

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        """410: the resourceVersion (or continue token) is older than etcd/the watch cache keeps."""
        return self.status == 410

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def retryable(self) -> bool:
        """Worth retrying unchanged later: throttling, timeouts, apiserver-side failures."""
        return self.status == 429 or self.status >= 500
