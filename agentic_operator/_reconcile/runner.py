"""A session's runner and everything it needs: identity, prerequisites, pod, Service, token.

Per session, as upstream makes them: a ServiceAccount (annotated with the creating user),
a Role and RoleBinding that let its token read and update sessions, a token Secret the pod
mounts as a file, a Service, and the runner pod itself, all owned by the session so the
garbage collector removes them with it. None of these objects is cached (only runner pods
are, in their compact view): they are written create-then-compare and read only when a
decision needs them, which keeps a Running session's memory cost to its pod's cache entry.

Removal is here too, because "no live runner behind a terminal session" is a property of
the runner: pod and Service go together, whoever ended the session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agentic_operator import _objects as objs
from agentic_operator._conditions import now_rfc3339
from agentic_operator._reconcile.context import Context
from agentic_operator._reconcile.ensure import ensure_object
from agentic_operator._reconcile.views import PodView, pod_view
from agentic_operator._session_store import parse_time
from agentic_operator.contract import RUNNER_SECRETS_NAME
from agentic_operator.kube import KubeError
from agentic_operator.resources import (
    PODS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
)

__all__ = ["RunnerObjects", "TokenError"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class TokenError(KubeError):
    """The runner token could not be minted; the session fails (TokenProvisionFailed)."""


class RunnerObjects:
    """Builds, reads and removes one session's runner objects; thread-safe, one per process."""

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self._clock = clock
        self._lock = threading.Lock()
        # key -> when its runner token was last known fresh; only non-terminal sessions.
        self._token_fresh: dict[str, float] = {}

    def forget(self, key: str) -> None:
        with self._lock:
            self._token_fresh.pop(key, None)

    # -- prerequisites and identity ------------------------------------------------------------

    def prerequisites_met(self, ns: str) -> bool:
        """The namespace holds the runner Secret, or Vertex is used and none is needed."""
        if self._ctx.config.use_vertex:
            return True
        return self._client.get_or_none(SECRETS.path(ns, RUNNER_SECRETS_NAME)) is not None

    def ensure_identity(self, live: Obj) -> None:
        """ServiceAccount, Role, RoleBinding, token Secret and Service; TokenError on minting."""
        c = self._client
        ns = live["metadata"]["namespace"]
        name = live["metadata"]["name"]
        ensure_object(c, SERVICE_ACCOUNTS.path(ns), objs.runner_service_account(live), fields=())
        self._ensure_user_annotation(ns, live)
        ensure_object(c, ROLES.path(ns), objs.runner_role(live), fields=("rules",))
        ensure_object(
            c,
            ROLE_BINDINGS.path(ns),
            objs.runner_role_binding(live),
            fields=("subjects",),
            immutable=("roleRef",),
        )
        if c.get_or_none(SECRETS.path(ns, objs.token_secret_name(name))) is None:
            t0 = time.monotonic()
            token = self._mint(ns, name)
            c.create_or_exists(
                SECRETS.path(ns),
                objs.runner_token_secret(live, token=token, refreshed_at=now_rfc3339()),
            )
            self._ctx.metrics.token_provisioned(time.monotonic() - t0)
            with self._lock:
                self._token_fresh[f"{ns}/{name}"] = self._clock()
        c.create_or_exists(SERVICES.path(ns), objs.runner_service(live))

    def _ensure_user_annotation(self, ns: str, live: Obj) -> None:
        """An existing ServiceAccount (a restart) gets the creating user's annotation too."""
        want = objs.created_by_user(live)
        if not want:
            return
        path = SERVICE_ACCOUNTS.path(ns, objs.service_account_name(live["metadata"]["name"]))
        sa = self._client.get_or_none(path)
        if sa is None:
            return
        ann = sa["metadata"].get("annotations") or {}
        if all(ann.get(k) == v for k, v in want.items()):
            return
        sa["metadata"]["annotations"] = {**ann, **want}
        self._client.replace(path, sa)

    # -- the pod -----------------------------------------------------------------------------

    def cached_pod(self, ns: str, name: str) -> PodView | None:
        value = self._ctx.pods.get(f"{ns}/{objs.pod_name(name)}")
        return None if value is None else pod_view(value)

    def live_pod(self, ns: str, name: str) -> Obj | None:
        return self._client.get_or_none(PODS.path(ns, objs.pod_name(name)))

    def pod(self, ns: str, name: str) -> PodView | None:
        """The runner pod from the cache, or live when the cache has not caught up yet: the
        pod is not there, or is on its way out (after a restart the cache may still hold the
        previous run's pod, going, while its successor already runs)."""
        pod = self.cached_pod(ns, name)
        if pod is not None and not pod.deleting:
            return pod
        live = self.live_pod(ns, name)
        return None if live is None else pod_view(live)

    def create_pod(self, live: Obj) -> bool:
        """Create the runner pod; False when it already existed (a racing worker made it)."""
        t0 = time.monotonic()
        created = self._client.create_or_exists(
            PODS.path(live["metadata"]["namespace"]),
            objs.runner_pod(live, image=self._ctx.config.runner_image),
        )
        if created:
            self._ctx.metrics.pod_created(time.monotonic() - t0)
        return created

    def delete_pod(self, ns: str, name: str) -> None:
        self._client.delete_if_present(PODS.path(ns, objs.pod_name(name)))

    def remove(self, ns: str, name: str) -> None:
        """Delete the runner pod and its Service (either may already be gone)."""
        self.delete_pod(ns, name)
        self._client.delete_if_present(SERVICES.path(ns, objs.service_name(name)))

    def remove_if_cached(self, ns: str, name: str) -> bool:
        """Remove the runner when the pod cache still holds a live one; True if it did."""
        pod = self.cached_pod(ns, name)
        if pod is None or pod.deleting:
            return False
        log.info("session %s/%s has ended: removing its runner pod and Service", ns, name)
        self.remove(ns, name)
        return True

    # -- the token -----------------------------------------------------------------------------

    def _mint(self, ns: str, name: str) -> str:
        path = SERVICE_ACCOUNTS.path(ns, objs.service_account_name(name), "token")
        try:
            resp = self._client.create(
                path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
            )
        except KubeError as e:
            raise TokenError(f"Failed to provision runner token: {e}") from e
        token = str((resp.get("status") or {}).get("token") or "").strip()
        if not token:
            raise TokenError(f"empty token for {ns}/{objs.service_account_name(name)}")
        return token

    def ensure_fresh_token(self, ns: str, name: str) -> None:
        """Mint a new token into the Secret once it is older than the refresh interval.

        The pod mounts the Secret as a file, so the kubelet carries the new token into the
        running runner; nothing here touches the pod.
        """
        key = f"{ns}/{name}"
        interval = self._ctx.config.token_refresh_seconds
        now = self._clock()
        with self._lock:
            fresh = self._token_fresh.get(key)
        if fresh is not None and now - fresh < interval:
            return
        path = SECRETS.path(ns, objs.token_secret_name(name))
        secret = self._client.get_or_none(path)
        if secret is None:
            # Upstream leaves a missing secret alone here; remember the look so a thousand
            # Running sessions do not cost a GET each every 30 s.
            with self._lock:
                self._token_fresh[key] = now
            return
        ann = (secret.get("metadata") or {}).get("annotations") or {}
        refreshed = parse_time(ann.get(objs.TOKEN_REFRESHED_AT_ANNOTATION))
        if refreshed is None or now - refreshed >= interval:
            t0 = time.monotonic()
            token = self._mint(ns, name)
            fresh_secret = objs.runner_token_secret(
                {"metadata": {"name": name, "namespace": ns, "uid": ""}},
                token=token,
                refreshed_at=now_rfc3339(),
            )
            secret.setdefault("data", {}).update(fresh_secret["data"])
            secret["metadata"].setdefault("annotations", {}).update(
                fresh_secret["metadata"]["annotations"]
            )
            self._client.replace(path, secret)
            self._ctx.metrics.token_provisioned(time.monotonic() - t0)
            log.info("session %s: runner token refreshed", key)
            refreshed = now
        with self._lock:
            self._token_fresh[key] = refreshed
