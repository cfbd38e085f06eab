"""Calls into a running session's runner (its AG-UI HTTP API) through the apiserver.

Upstream built a new http.Client per call inside loops and read runner answers with an
unbounded io.ReadAll. Here every call goes through the operator's one `KubeClient` (one
shared connection pool) and the apiserver's service proxy, and every body is read through
the 64 KiB cap, so a misbehaving runner can neither exhaust sockets nor memory. Going
through the apiserver also means the operator never needs a route to pod IPs.
"""

from __future__ import annotations

import json
from typing import Any

from agentic_operator._objects import service_name
from agentic_operator.kube import ApiError, BodyTooLargeError, KubeClient, KubeError

__all__ = ["RUNNER_BODY_CAP", "RunnerApi", "RunnerApiError"]

RUNNER_BODY_CAP = 64 * 1024


class RunnerApiError(Exception):
    """The runner could not be reached or answered with an error."""


class RunnerApi:
    def __init__(self, client: KubeClient, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout

    @staticmethod
    def proxy_path(namespace: str, session: str, path: str) -> str:
        return (
            f"/api/v1/namespaces/{namespace}/services/"
            f"{service_name(session)}:agui/proxy/{path.lstrip('/')}"
        )

    def call(
        self, *, namespace: str, session: str, method: str, path: str, body: Any = None
    ) -> Any:
        """One JSON call; returns the decoded answer (None for an empty body)."""
        raw = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            data = self._client.request_raw(
                method,
                self.proxy_path(namespace, session, path),
                body=raw,
                content_type="application/json" if raw is not None else None,
                accept="application/json",
                timeout=self._timeout,
                limit=RUNNER_BODY_CAP,
            )
        except BodyTooLargeError as e:
            raise RunnerApiError(f"runner {namespace}/{session} {path}: answer over 64 KiB") from e
        except ApiError as e:
            raise RunnerApiError(
                f"runner {namespace}/{session} {path}: {e.status} {e.message[:200]}"
            ) from e
        except KubeError as e:
            raise RunnerApiError(f"runner {namespace}/{session} {path}: {e}") from e
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise RunnerApiError(f"runner {namespace}/{session} {path}: answer is not JSON") from e

    def add_repo(self, *, namespace: str, session: str, repo: dict[str, Any]) -> None:
        self.call(namespace=namespace, session=session, method="POST", path="/repos/add", body=repo)

    def remove_repo(self, *, namespace: str, session: str, name: str) -> None:
        self.call(
            namespace=namespace,
            session=session,
            method="POST",
            path="/repos/remove",
            body={"name": name},
        )

    def set_workflow(self, *, namespace: str, session: str, workflow: dict[str, Any]) -> None:
        self.call(
            namespace=namespace, session=session, method="POST", path="/workflow", body=workflow
        )
