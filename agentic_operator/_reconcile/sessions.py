"""The AgenticSession lifecycle: Pending -> Creating -> Running -> Stopping/Stopped | Completed | Failed.

Decisions are made from the compact caches first: a terminal session, or a Running one
whose pod is healthy, costs no apiserver call at all, which is what keeps thousands of
sessions cheap. Only when something must be written is the live object read, and every
status write is a pure function re-applied to the freshest object on a 409 (PUT with its
resourceVersion), so ten workers racing on one session neither lose another writer's
update nor make a second runner pod (deterministic names, AlreadyExists is success).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agentic_operator import _objects as objs
from agentic_operator._conditions import now_rfc3339, set_condition
from agentic_operator._controller import Result
from agentic_operator._kube import ApiError, KubeError, api_path
from agentic_operator._reconcile.context import (
    Context,
    create_ignoring_exists,
    delete_ignoring_missing,
    get_or_none,
    sessions_path,
)
from agentic_operator._reconcile.inactivity import resolve_timeout, should_auto_stop
from agentic_operator._reconcile.views import PodView, pod_view
from agentic_operator._runner_api import RunnerApiError
from agentic_operator._session_store import (
    DESIRED_PHASE_ANNOTATION,
    STOP_REASON_ANNOTATION,
    TERMINAL_PHASES,
    SessionView,
    parse_time,
    view,
)

__all__ = ["REQUEUE", "SessionReconciler", "StatusConflictError"]

log = logging.getLogger(__name__)

# Upstream requeue intervals (seconds).
REQUEUE = {"Pending": 2.0, "Creating": 2.0, "Running": 30.0, "Stopping": 2.0, "error": 5.0}
TOKEN_REFRESH_SECONDS = 45 * 60
_STATUS_RETRIES = 10
# Waiting reasons after which the runner can never start without a new image. Config errors
# (CreateContainerConfigError) are not here: the kubelet reports them while its secret
# cache warms up and retries on its own.
_FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})

Obj = dict[str, Any]
Mutation = Callable[[Obj, Obj], Obj | None]
"""(live object, copy of its status) -> the new status, or None when nothing must change."""


class StatusConflictError(KubeError):
    """A status write lost the optimistic-concurrency race too many times in a row."""


def _cond(status: Obj, obj: Obj, ctype: str, *, to: str, reason: str, message: str = "") -> None:
    status["conditions"], _ = set_condition(
        status.get("conditions"),
        ctype=ctype,
        status=to,
        reason=reason,
        message=message,
        observed_generation=int((obj.get("metadata") or {}).get("generation") or 0),
    )


class SessionReconciler:
    """`reconcile(key)` for the sessions controller; thread-safe, keep one per process."""

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self._clock = clock
        self._token_lock = threading.Lock()
        # key -> when its runner token was last known fresh; only non-terminal sessions.
        self._token_fresh: dict[str, float] = {}

    # -- entry point --------------------------------------------------------------------------

    def __call__(self, key: str) -> Result:
        ns, sep, name = key.partition("/")
        if not sep:
            return Result()
        started = time.monotonic()
        phase = "Unknown"
        ok = True
        try:
            phase, result = self._reconcile(ns, name, key)
            return result
        except (KubeError, RunnerApiError) as e:
            ok = False
            self._ctx.metrics.session_error(phase, type(e).__name__)
            log.warning("session %s: %s; retrying in %.0fs", key, e, REQUEUE["error"])
            return Result(requeue_after=REQUEUE["error"])
        except Exception as e:
            ok = False
            self._ctx.metrics.session_error(phase, "internal")
            log.exception("session %s: unexpected %s", key, type(e).__name__)
            return Result(requeue_after=REQUEUE["error"])
        finally:
            self._ctx.metrics.reconcile_done(phase, ok, time.monotonic() - started)

    def forget(self, key: str) -> None:
        """Drop per-session memory (called when a session is terminal or deleted)."""
        with self._token_lock:
            self._token_fresh.pop(key, None)

    # -- decisions from the cache ------------------------------------------------------------

    def _reconcile(self, ns: str, name: str, key: str) -> tuple[str, Result]:
        ctx = self._ctx
        if not ctx.managed(ns):
            return "Skipped", Result()
        cached = ctx.sessions.get(key)
        if cached is None:
            self.forget(key)
            return "Deleted", Result()
        v = view(cached)
        if v.deleting:
            self.forget(key)
            return v.phase or "Pending", Result()
        if v.terminal and v.desired_phase != "Running":
            self.forget(key)
            if v.phase == "Stopped":
                self._cleanup_stopped(ns, name)
            return v.phase, Result()
        if v.phase == "Running" and not v.desired_phase:
            fast = self._running_from_cache(ns, name, key, v)
            if fast is not None:
                return "Running", fast
        live = get_or_none(self._client, sessions_path(ns, name))
        if live is None:
            self.forget(key)
            return "Deleted", Result()
        return self._reconcile_live(ns, name, key, live)

    def _running_from_cache(self, ns: str, name: str, key: str, v: SessionView) -> Result | None:
        """A healthy Running session: no apiserver read. None means "look at the live object"."""
        pod = self._cached_pod(ns, name)
        if pod is None or pod.deleting or pod.phase in ("Succeeded", "Failed"):
            return None
        if v.generation > v.observed_generation:
            return None
        if self._auto_stop_due(ns, v):
            return None
        self._ensure_fresh_token(ns, name, key)
        return Result(requeue_after=REQUEUE["Running"])

    # -- the lifecycle on the live object ---------------------------------------------------------

    def _reconcile_live(self, ns: str, name: str, key: str, live: Obj) -> tuple[str, Result]:
        v = view(live)
        if v.deleting:
            return v.phase or "Pending", Result()
        phase, desired = v.phase, v.desired_phase

        if phase == "" or (phase == "Pending" and not (live.get("status") or {}).get("startTime")):
            initialised = self._write_status(ns, name, live, _init_pending)
            if initialised is None:
                return "Pending", Result()
            live = initialised
            v = view(live)
            phase, desired = v.phase, v.desired_phase

        if desired == "Running" and phase not in ("Running", "Creating", "Pending"):
            log.info("session %s: restart requested (phase %s)", key, phase)
            self._delete_runner(ns, name)
            restarted = self._write_status(ns, name, live, _restart)
            if restarted is None:
                return "Pending", Result()
            live = restarted
            phase = view(live).phase

        if desired == "Stopped" and phase in ("Running", "Creating"):
            log.info("session %s: stop requested (phase %s)", key, phase)
            self._delete_runner(ns, name)
            self._write_status(ns, name, live, _stopping)
            return "Stopping", Result(requeue_after=REQUEUE["Stopping"])
        if desired == "Stopped" and phase == "Pending":
            after = self._write_status(ns, name, live, _stopped)
            if after is not None:
                self._clear_stop_annotations(ns, name, after)
            return "Stopped", Result()
        if phase == "Stopping":
            return "Stopping", self._stopping(ns, name, live)
        if phase in TERMINAL_PHASES:
            return phase, Result()
        if desired == "Stopped":
            return phase, Result()
        if phase == "Pending":
            return "Pending", self._pending(ns, name, key, live)
        if phase == "Creating":
            return "Creating", self._creating(ns, name, live)
        if phase == "Running":
            return "Running", self._running(ns, name, key, live)
        return phase, Result()

    def _pending(self, ns: str, name: str, key: str, live: Obj) -> Result:
        ok, failure = self._ensure_identity(ns, name, live)
        if not ok:
            self._write_status(ns, name, live, failure)
            return Result()
        pods = api_path(version="v1", plural="pods", namespace=ns)
        existing = self._live_pod(ns, name)
        if existing is not None and (
            existing.get("metadata", {}).get("deletionTimestamp") or not _owned_by(existing, live)
        ):
            # The previous run's pod is still terminating (restart) or belongs to an older
            # session of the same name: wait for it to go rather than adopt it.
            if _owned_by(existing, live) is False and not existing["metadata"].get(
                "deletionTimestamp"
            ):
                delete_ignoring_missing(self._client, f"{pods}/{objs.pod_name(name)}")
            return Result(requeue_after=1.0)
        created = False
        if existing is None:
            t0 = time.monotonic()
            created = create_ignoring_exists(
                self._client, pods, objs.runner_pod(live, image=self._ctx.config.runner_image)
            )
            if created:
                self._ctx.metrics.pod_created(time.monotonic() - t0)
        after = self._write_status(ns, name, live, _creating(created))
        if after is not None and view(after).desired_phase == "Running":
            self._patch_annotations(
                ns,
                name,
                after,
                {DESIRED_PHASE_ANNOTATION: None},
                expect={DESIRED_PHASE_ANNOTATION: "Running"},
            )
        return Result(requeue_after=REQUEUE["Creating"])

    def _ensure_identity(self, ns: str, name: str, live: Obj) -> tuple[bool, Mutation]:
        """ServiceAccount, runner token Secret and Service; (False, failure) if the token fails."""
        c = self._client
        create_ignoring_exists(
            c,
            api_path(version="v1", plural="serviceaccounts", namespace=ns),
            objs.runner_service_account(live),
        )
        secret_path = api_path(
            version="v1", plural="secrets", namespace=ns, name=objs.token_secret_name(name)
        )
        if get_or_none(c, secret_path) is None:
            t0 = time.monotonic()
            try:
                token = self._mint_token(ns, name)
            except KubeError as e:
                log.warning("session %s/%s: runner token: %s", ns, name, e)
                return False, _failed(
                    "TokenProvisionFailed", f"Failed to provision runner token: {e}"[:512]
                )
            create_ignoring_exists(
                c,
                api_path(version="v1", plural="secrets", namespace=ns),
                objs.runner_token_secret(live, token=token, refreshed_at=now_rfc3339()),
            )
            self._ctx.metrics.token_provisioned(time.monotonic() - t0)
            with self._token_lock:
                self._token_fresh[f"{ns}/{name}"] = self._clock()
        create_ignoring_exists(
            c, api_path(version="v1", plural="services", namespace=ns), objs.runner_service(live)
        )
        return True, _init_pending

    def _creating(self, ns: str, name: str, live: Obj) -> Result:
        pod = self._pod(ns, name)
        if pod is None:
            self._write_status(ns, name, live, _pod_missing)
            return Result(requeue_after=0.5)
        if pod.deleting:
            return Result(requeue_after=1.0)
        return self._follow_pod(ns, name, live, pod)

    def _running(self, ns: str, name: str, key: str, live: Obj) -> Result:
        pod = self._pod(ns, name)
        if pod is None:
            log.info("session %s: runner pod missing while Running, recreating", key)
            self._write_status(ns, name, live, _pod_missing)
            return Result(requeue_after=0.5)
        if pod.phase in ("Succeeded", "Failed") or pod.deleting:
            return self._follow_pod(ns, name, live, pod)
        v = view(live)
        if v.generation > v.observed_generation:
            live = self._reconcile_spec(ns, name, live) or live
        if self._auto_stop_due(ns, v):
            log.info("session %s: idle beyond its inactivity timeout, stopping", key)
            self._patch_annotations(
                ns,
                name,
                live,
                {DESIRED_PHASE_ANNOTATION: "Stopped", STOP_REASON_ANNOTATION: "inactivity"},
                expect={DESIRED_PHASE_ANNOTATION: ""},
                still=lambda obj: self._auto_stop_due(ns, view(obj)),
            )
            return Result(requeue_after=REQUEUE["Stopping"])
        self._ensure_fresh_token(ns, name, key)
        return Result(requeue_after=REQUEUE["Running"])

    def _follow_pod(self, ns: str, name: str, live: Obj, pod: PodView) -> Result:
        after = self._write_status(ns, name, live, _from_pod(pod))
        phase = view(after).phase if after is not None else ""
        if phase in TERMINAL_PHASES:
            self.forget(f"{ns}/{name}")
            return Result()
        return Result(requeue_after=REQUEUE.get(phase, REQUEUE["Creating"]))

    def _stopping(self, ns: str, name: str, live: Obj) -> Result:
        pod_path = api_path(version="v1", plural="pods", namespace=ns, name=objs.pod_name(name))
        if get_or_none(self._client, pod_path) is not None:
            self._delete_runner(ns, name)
            return Result(requeue_after=REQUEUE["Stopping"])
        after = self._write_status(ns, name, live, _stopped)
        if after is not None:
            self._clear_stop_annotations(ns, name, after)
        self.forget(f"{ns}/{name}")
        return Result()

    # -- spec changes while Running -------------------------------------------------------------

    def _reconcile_spec(self, ns: str, name: str, live: Obj) -> Obj | None:
        spec = live.get("spec") or {}
        status = live.get("status") or {}
        want = [r for r in spec.get("repos") or () if isinstance(r, dict) and r.get("url")]
        have = [r for r in status.get("reconciledRepos") or () if isinstance(r, dict)]
        want_urls = {r["url"]: r for r in want}
        have_urls = {str(r.get("url")): r for r in have}
        try:
            for url, repo in want_urls.items():
                if url not in have_urls:
                    self._ctx.runner.add_repo(namespace=ns, session=name, repo=repo)
            for url, repo in have_urls.items():
                if url not in want_urls:
                    self._ctx.runner.remove_repo(
                        namespace=ns, session=name, name=str(repo.get("name") or url)
                    )
            workflow = spec.get("activeWorkflow")
            if isinstance(workflow, dict) and workflow != status.get("reconciledWorkflow"):
                self._ctx.runner.set_workflow(namespace=ns, session=name, workflow=workflow)
        except RunnerApiError as e:
            log.warning("session %s/%s: spec reconciliation: %s", ns, name, e)
            return self._write_status(ns, name, live, _spec_failed(str(e)))
        return self._write_status(ns, name, live, _spec_applied)

    # -- inactivity and tokens --------------------------------------------------------------------

    def _auto_stop_due(self, ns: str, v: SessionView) -> bool:
        if v.phase != "Running":
            return False
        project = None if v.inactivity_timeout is not None else self._ctx.timeouts.get(ns)
        timeout = resolve_timeout(
            v, project=project, fallback=self._ctx.config.fallback_inactivity_timeout
        )
        return should_auto_stop(v, timeout=timeout, now=self._clock())

    def _mint_token(self, ns: str, name: str) -> str:
        path = api_path(
            version="v1",
            plural="serviceaccounts",
            namespace=ns,
            name=objs.service_account_name(name),
            subresource="token",
        )
        resp = self._client.create(
            path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        )
        token = str((resp.get("status") or {}).get("token") or "").strip()
        if not token:
            raise KubeError(f"empty token for {ns}/{objs.service_account_name(name)}")
        return token

    def _ensure_fresh_token(self, ns: str, name: str, key: str) -> None:
        now = self._clock()
        with self._token_lock:
            fresh = self._token_fresh.get(key)
        if fresh is not None and now - fresh < TOKEN_REFRESH_SECONDS:
            return
        path = api_path(
            version="v1", plural="secrets", namespace=ns, name=objs.token_secret_name(name)
        )
        secret = get_or_none(self._client, path)
        if secret is None:
            # Upstream leaves a missing secret alone here; remember the look so a thousand
            # Running sessions do not cost a GET each every 30 s.
            with self._token_lock:
                self._token_fresh[key] = now
            return
        ann = (secret.get("metadata") or {}).get("annotations") or {}
        refreshed = parse_time(ann.get(objs.TOKEN_REFRESHED_AT_ANNOTATION))
        if refreshed is None or now - refreshed >= TOKEN_REFRESH_SECONDS:
            t0 = time.monotonic()
            token = self._mint_token(ns, name)
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
            refreshed = now
        with self._token_lock:
            self._token_fresh[key] = refreshed

    # -- pods ----------------------------------------------------------------------------------------

    def _cached_pod(self, ns: str, name: str) -> PodView | None:
        value = self._ctx.pods.get(f"{ns}/{objs.pod_name(name)}")
        return None if value is None else pod_view(value)

    def _live_pod(self, ns: str, name: str) -> Obj | None:
        return get_or_none(
            self._client,
            api_path(version="v1", plural="pods", namespace=ns, name=objs.pod_name(name)),
        )

    def _pod(self, ns: str, name: str) -> PodView | None:
        """The runner pod from the cache, or live when the cache has not caught up yet."""
        pod = self._cached_pod(ns, name)
        if pod is not None:
            return pod
        live = self._live_pod(ns, name)
        return None if live is None else pod_view(live)

    def _delete_runner(self, ns: str, name: str) -> None:
        c = self._client
        delete_ignoring_missing(
            c, api_path(version="v1", plural="pods", namespace=ns, name=objs.pod_name(name))
        )
        delete_ignoring_missing(
            c, api_path(version="v1", plural="services", namespace=ns, name=objs.service_name(name))
        )

    def _cleanup_stopped(self, ns: str, name: str) -> None:
        pod = self._cached_pod(ns, name)
        if pod is not None and not pod.deleting:
            self._delete_runner(ns, name)

    # -- writes with optimistic concurrency -----------------------------------------------------

    def _write_status(self, ns: str, name: str, live: Obj, mutate: Mutation) -> Obj | None:
        """Apply `mutate` to the freshest object and PUT its status; retried on 409.

        Returns the object as stored afterwards (unchanged if nothing needed writing), or
        None when the session is gone.
        """
        path = sessions_path(ns, name, "status")
        obj: Obj | None = live
        for _ in range(_STATUS_RETRIES):
            if obj is None:
                obj = get_or_none(self._client, sessions_path(ns, name))
                if obj is None:
                    return None
            before = obj.get("status") or {}
            new_status = mutate(obj, dict(before))
            if new_status is None or new_status == before:
                return obj
            body = dict(obj)
            body["status"] = new_status
            try:
                stored = self._client.replace(path, body)
            except ApiError as e:
                if e.not_found:
                    return None
                if e.conflict:
                    obj = None
                    continue
                raise
            self._record_transition(ns, before, new_status)
            return stored
        raise StatusConflictError(
            f"status of {ns}/{name}: still conflicting after {_STATUS_RETRIES} attempts"
        )

    def _record_transition(self, ns: str, before: Obj, after: Obj) -> None:
        old = str(before.get("phase") or "")
        new = str(after.get("phase") or "")
        if old == new:
            return
        m = self._ctx.metrics
        m.phase_transition(old or "None", new or "Unknown")
        if new == "Pending" and old in ("", *TERMINAL_PHASES, "Stopping"):
            m.session_started()
        if new in TERMINAL_PHASES:
            m.session_completed(new)
        if new == "Running":
            start = parse_time(after.get("startTime"))
            if start is not None:
                m.startup(max(0.0, self._clock() - start))

    def _patch_annotations(
        self,
        ns: str,
        name: str,
        live: Obj,
        changes: dict[str, str | None],
        *,
        expect: dict[str, str],
        still: Callable[[Obj], bool] | None = None,
    ) -> None:
        """Merge-patch annotations only while `expect` holds (never undo a newer user request)."""
        obj: Obj | None = live
        for _ in range(_STATUS_RETRIES):
            if obj is None:
                obj = get_or_none(self._client, sessions_path(ns, name))
                if obj is None:
                    return
            meta = obj.get("metadata") or {}
            ann = meta.get("annotations") or {}
            if any(str(ann.get(k) or "").strip() != v for k, v in expect.items()):
                return
            if still is not None and not still(obj):
                return
            if all(ann.get(k) == v for k, v in changes.items()):
                return
            body = {
                "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": changes}
            }
            try:
                self._client.patch(sessions_path(ns, name), body, patch_type="merge")
                return
            except ApiError as e:
                if e.not_found:
                    return
                if e.conflict:
                    obj = None
                    continue
                raise
        raise StatusConflictError(f"annotations of {ns}/{name}: still conflicting")

    def _clear_stop_annotations(self, ns: str, name: str, live: Obj) -> None:
        self._patch_annotations(
            ns,
            name,
            live,
            {DESIRED_PHASE_ANNOTATION: None, STOP_REASON_ANNOTATION: None},
            expect={DESIRED_PHASE_ANNOTATION: "Stopped"},
        )


# -- status mutations (pure functions of the live object) -------------------------------------------


def _owned_by(pod: Obj, session: Obj) -> bool:
    uid = (session.get("metadata") or {}).get("uid")
    refs = (pod.get("metadata") or {}).get("ownerReferences") or ()
    return any(isinstance(r, dict) and r.get("uid") == uid for r in refs)


def _phase(status: Obj) -> str:
    return str(status.get("phase") or "")


def _init_pending(obj: Obj, status: Obj) -> Obj | None:
    # The CRD defaults phase to Pending whenever anyone writes a status first, so a Pending
    # session without a startTime has not been initialised by us yet either.
    if _phase(status) not in ("", "Pending") or status.get("startTime"):
        return None
    status["phase"] = "Pending"
    status["startTime"] = now_rfc3339()
    return status


def _restart(obj: Obj, status: Obj) -> Obj | None:
    if _phase(status) in ("Pending", "Creating", "Running"):
        return None
    status["phase"] = "Pending"
    status["startTime"] = now_rfc3339()
    status.pop("completionTime", None)
    status.pop("stoppedReason", None)
    _cond(
        status, obj, "Ready", to="False", reason="Restarting", message="Preparing to start session"
    )
    return status


def _stopping(obj: Obj, status: Obj) -> Obj | None:
    if _phase(status) not in ("Running", "Creating"):
        return None
    status["phase"] = "Stopping"
    _cond(status, obj, "Ready", to="False", reason="Stopping", message="Session is stopping")
    return status


def _stop_reason(obj: Obj) -> str:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return "inactivity" if ann.get(STOP_REASON_ANNOTATION) == "inactivity" else "user"


def _stopped(obj: Obj, status: Obj) -> Obj | None:
    if _phase(status) not in ("Stopping", "Pending"):
        return None
    reason = _stop_reason(obj)
    cond_reason = "InactivityTimeout" if reason == "inactivity" else "UserStopped"
    status["phase"] = "Stopped"
    status["completionTime"] = now_rfc3339()
    status["stoppedReason"] = reason
    _cond(
        status, obj, "Ready", to="False", reason=cond_reason, message=f"Session stopped ({reason})"
    )
    _cond(status, obj, "PodCreated", to="False", reason=cond_reason, message="Runner pod deleted")
    _cond(
        status,
        obj,
        "RunnerStarted",
        to="False",
        reason=cond_reason,
        message=f"Runner stopped ({reason})",
    )
    return status


def _creating(created: bool) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        if _phase(status) != "Pending":
            return None
        status["phase"] = "Creating"
        status["observedGeneration"] = int((obj.get("metadata") or {}).get("generation") or 0)
        _cond(
            status,
            obj,
            "SecretsReady",
            to="True",
            reason="RunnerTokenReady",
            message="Runner token available",
        )
        if created:
            _cond(
                status,
                obj,
                "PodCreated",
                to="True",
                reason="PodCreated",
                message="Runner pod created",
            )
        else:
            _cond(
                status,
                obj,
                "PodCreated",
                to="True",
                reason="PodExists",
                message="Runner pod already exists",
            )
        return status

    return mutate


def _pod_missing(obj: Obj, status: Obj) -> Obj | None:
    if _phase(status) not in ("Creating", "Running"):
        return None
    status["phase"] = "Pending"
    _cond(
        status,
        obj,
        "PodCreated",
        to="False",
        reason="PodMissing",
        message="Pod not found, will recreate",
    )
    _cond(status, obj, "Ready", to="False", reason="PodMissing", message="Runner pod not found")
    return status


def _failed(reason: str, message: str) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        if _phase(status) in TERMINAL_PHASES:
            return None
        status["phase"] = "Failed"
        status["completionTime"] = now_rfc3339()
        _cond(status, obj, "Ready", to="False", reason=reason, message=message)
        return status

    return mutate


def _from_pod(pod: PodView) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        phase = _phase(status)
        if phase not in ("Creating", "Running"):
            return None
        before = status.get("conditions")
        if pod.phase == "Succeeded":
            status["phase"] = "Completed"
            status["completionTime"] = now_rfc3339()
            _cond(
                status,
                obj,
                "RunnerStarted",
                to="False",
                reason="Completed",
                message="Runner finished",
            )
            _cond(status, obj, "Ready", to="False", reason="Completed", message="Session completed")
            return status
        if pod.phase == "Failed" or pod.waiting_reason in _FATAL_WAITING:
            reason = pod.terminated_reason or pod.waiting_reason or "PodFailed"
            detail = f"exit code {pod.exit_code}" if pod.exit_code is not None else pod.phase
            message = f"Runner failed: {reason} ({detail})"
            if pod.message:
                message += f": {pod.message}"
            status["phase"] = "Failed"
            status["completionTime"] = now_rfc3339()
            _cond(status, obj, "RunnerStarted", to="False", reason=reason, message=message[:512])
            _cond(status, obj, "Ready", to="False", reason=reason, message=message[:512])
            return status
        if pod.deleting:
            return None
        if pod.scheduled:
            _cond(
                status,
                obj,
                "PodScheduled",
                to="True",
                reason="Scheduled",
                message="Runner pod scheduled",
            )
        else:
            _cond(
                status,
                obj,
                "PodScheduled",
                to="False",
                reason="Unschedulable",
                message=pod.message or "Waiting for a node",
            )
        if pod.running:
            status["phase"] = "Running"
            _cond(
                status,
                obj,
                "RunnerStarted",
                to="True",
                reason="ContainerRunning",
                message="Runner container started",
            )
            _cond(status, obj, "Ready", to="True", reason="Running", message="Session is running")
        elif pod.waiting_reason:
            _cond(
                status,
                obj,
                "RunnerStarted",
                to="False",
                reason=pod.waiting_reason,
                message=pod.message,
            )
        if status.get("phase") == phase and status.get("conditions") == before:
            return None
        return status

    return mutate


def _spec_applied(obj: Obj, status: Obj) -> Obj | None:
    spec = obj.get("spec") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    status["observedGeneration"] = generation
    status["reconciledRepos"] = [
        {"url": r["url"], "branch": r.get("branch", "main"), "status": "Ready"}
        for r in spec.get("repos") or ()
        if isinstance(r, dict) and r.get("url")
    ]
    if isinstance(spec.get("activeWorkflow"), dict):
        status["reconciledWorkflow"] = spec["activeWorkflow"]
    _cond(
        status,
        obj,
        "Reconciled",
        to="True",
        reason="SpecApplied",
        message=f"Successfully reconciled generation {generation}",
    )
    return status


def _spec_failed(message: str) -> Mutation:
    def mutate(obj: Obj, status: Obj) -> Obj | None:
        _cond(
            status,
            obj,
            "Reconciled",
            to="False",
            reason="RepoReconciliationFailed",
            message=message[:512],
        )
        return status

    return mutate
