"""Typed errors of the Kubernetes client, caught by type as kopf's `_cogs/clients/errors.py` does.

Callers branch on what the apiserver said: a 404 means "already gone", a 409 Conflict means
"re-read and retry", 410 Gone means "relist". Every non-2xx answer becomes an `ApiError`
subclass chosen from the status code and the `Status` reason, so a caller writes
`except NotFoundError:` instead of comparing numbers, and a new caller cannot mistake an
AlreadyExists (409 too) for an optimistic-concurrency conflict. Transport failures have
their own type so an informer can tell "reconnect and resume" from "the apiserver refused".
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeError",
    "NotFoundError",
    "ServerError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
]


class KubeError(Exception):
    """Base class of every error raised by `agentic_operator.kube`."""


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
        """The subclass that matches `status` (and the `Status` reason), built from its body."""
        reason = message = ""
        if body is not None:
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or "")
        kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
        if status == 409 and reason == "AlreadyExists":
            kind = AlreadyExistsError
        return kind(
            status=status, reason=reason, message=message, body=body, method=method, path=path
        )


class UnauthorizedError(ApiError):
    """401: the credentials were refused (expired token or certificate)."""


class ForbiddenError(ApiError):
    """403: authenticated, but RBAC (or an admission webhook) says no."""


class NotFoundError(ApiError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class ConflictError(ApiError):
    """409 on a stale resourceVersion: re-read the object and apply the change again."""


class AlreadyExistsError(ApiError):
    """409 AlreadyExists on a create: an object of that name is already there."""


class GoneError(ApiError):
    """410: the resourceVersion (or continue token) is older than the apiserver keeps."""


class InvalidError(ApiError):
    """422: validation (schema, immutable field, a request above a limit) refused the object."""


class TooManyRequestsError(ApiError):
    """429: throttled by priority and fairness or a webhook; retry later."""


class ServerError(ApiError):
    """5xx: the apiserver or a proxied endpoint failed; retry later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
    429: TooManyRequestsError,
}
