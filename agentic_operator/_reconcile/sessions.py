"""The AgenticSession lifecycle: Pending -> Creating -> Running -> Stopping/Stopped | Completed | Failed.

Decisions are made from the compact caches first: a terminal session, or a Running one
whose pod is healthy, costs no apiserver call at all, which is what keeps thousands of
sessions cheap. Only when something must be written is the live object read, and every
status write is a pure function (`session_status`) re-applied to the freshest object on a
409, so ten workers racing on one session neither lose another writer's update nor make a
second runner pod (deterministic names, AlreadyExists is success).

A terminal session never keeps a live runner, whoever made it terminal: the cache path
removes a runner pod it still sees behind a Completed, Failed or Stopped session (a pod
event for such a session brings it here), the Pending path reads the phase again right
before it creates a pod, and a pod created while another writer finished the session is
removed as soon as the status write shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agentic_operator._controller import Outcome, Result, TerminalError
from agentic_operator._reconcile import session_status as st
from agentic_operator._reconcile.context import Context
from agentic_operator._reconcile.inactivity import resolve_timeout, should_auto_stop
from agentic_operator._reconcile.runner import RunnerObjects, TokenError
from agentic_operator._reconcile.views import PodView
from agentic_operator._runner_api import RunnerApiError
from agentic_operator._session_store import SessionView, parse_time, view
from agentic_operator.contract import (
    AGENTIC_SESSIONS,
    DESIRED_PHASE_ANNOTATION,
    RUNNER_SA_ANNOTATION,
    RUNNER_TOKEN_SECRET_ANNOTATION,
    STOP_REASON_ANNOTATION,
    TERMINAL_PHASES,
    service_account_name,
    token_secret_name,
)
from agentic_operator.kube import InvalidError, KubeError, update_with_retry

__all__ = ["REQUEUE", "SessionReconciler"]

log = logging.getLogger(__name__)

# Upstream requeue intervals (seconds); errors are requeued by the controller (5 s).
REQUEUE = {"Pending": 2.0, "Creating": 2.0, "Running": 30.0, "Stopping": 2.0}

Obj = dict[str, Any]


class SessionReconciler:
    """`reconcile(key) -> (Result, error)` for the sessions controller; one per process."""

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self._clock = clock
        self.runner = RunnerObjects(ctx, clock=clock)

    # -- entry point --------------------------------------------------------------------------

    def __call__(self, key: str) -> Outcome:
        ns, sep, name = key.partition("/")
        if not sep:
            return Result(), None
        started = time.monotonic()
        phase = "Unknown"
        ok = False
        try:
            phase, result = self._reconcile(ns, name, key)
            ok = True
            return result, None
        except (KubeError, RunnerApiError) as e:
            self._ctx.metrics.session_error(ns, phase, type(e).__name__)
            # A 422 means what this operator wrote is wrong; retrying cannot fix that.
            return Result(), TerminalError(e) if isinstance(e, InvalidError) else e
        except Exception as e:
            self._ctx.metrics.session_error(ns, phase, "internal")
            return Result(), e
        finally:
            self._ctx.metrics.reconcile_done(phase, ok, time.monotonic() - started)

    def forget(self, key: str) -> None:
        """Drop per-session memory (called when a session is terminal or deleted)."""
        self.runner.forget(key)

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
            self.runner.remove_if_cached(ns, name)
            return v.phase, Result()
        if v.phase == "Running" and not v.desired_phase:
            fast = self._running_from_cache(ns, name, v)
            if fast is not None:
                return "Running", fast
        live = self._client.get_or_none(AGENTIC_SESSIONS.path(ns, name))
        if live is None:
            self.forget(key)
            return "Deleted", Result()
        return self._reconcile_live(ns, name, key, live)

    def _running_from_cache(self, ns: str, name: str, v: SessionView) -> Result | None:
        """A healthy Running session: no apiserver read. None means "look at the live object"."""
        pod = self.runner.cached_pod(ns, name)
        if pod is None or pod.deleting or pod.phase in ("Succeeded", "Failed"):
            return None
        if pod.waiting_reason:
            return None
        if v.generation > v.observed_generation:
            return None
        if self._auto_stop_due(ns, v):
            return None
        self.runner.ensure_fresh_token(ns, name)
        return Result(requeue_after=REQUEUE["Running"])

    # -- the lifecycle on the live object ---------------------------------------------------------

    def _reconcile_live(self, ns: str, name: str, key: str, live: Obj) -> tuple[str, Result]:
        v = view(live)
        if v.deleting:
            return v.phase or "Pending", Result()
        phase, desired = v.phase, v.desired_phase

        if phase == "" or (phase == "Pending" and not (live.get("status") or {}).get("startTime")):
            initialised = self._write_status(ns, name, live, st.init_pending)
            if initialised is None:
                return "Pending", Result()
            live = initialised
            v = view(live)
            phase, desired = v.phase, v.desired_phase

        if desired == "Running" and phase not in ("Running", "Creating", "Pending"):
            log.info("session %s: restart requested (phase %s)", key, phase)
            self.runner.remove(ns, name)
            restarted = self._write_status(ns, name, live, st.restart)
            if restarted is None:
                return "Pending", Result()
            live = restarted
            phase = view(live).phase

        if desired == "Stopped" and phase in ("Running", "Creating"):
            log.info("session %s: stop requested (phase %s)", key, phase)
            self.runner.remove(ns, name)
            self._write_status(ns, name, live, st.stopping)
            return "Stopping", Result(requeue_after=REQUEUE["Stopping"])
        if desired == "Stopped" and phase == "Pending":
            after = self._write_status(ns, name, live, st.stopped)
            if after is not None:
                self._clear_stop_annotations(ns, name, after)
            return "Stopped", Result()
        if phase == "Stopping":
            return "Stopping", self._stopping(ns, name, live)
        if phase in TERMINAL_PHASES:
            self.forget(key)
            self.runner.remove_if_cached(ns, name)
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
        runner = self.runner
        if not runner.prerequisites_met(ns):
            # Upstream returns an error here and the key backs off; the session waits with
            # SecretsReady=False and no runner objects until the Secret appears.
            self._write_status(ns, name, live, st.runner_secret_missing)
            return Result(requeue=True)
        try:
            runner.ensure_identity(live)
        except TokenError as e:
            self._write_status(ns, name, live, st.failed("TokenProvisionFailed", str(e)))
            return Result()
        live = self._annotate_runner_identity(ns, name, live) or live
        existing = runner.live_pod(ns, name)
        if existing is not None and (
            existing.get("metadata", {}).get("deletionTimestamp") or not _owned_by(existing, live)
        ):
            # The previous run's pod is still terminating (restart) or belongs to an older
            # session of the same name: wait for it to go rather than adopt it.
            if not existing["metadata"].get("deletionTimestamp"):
                runner.delete_pod(ns, name)
            return Result(requeue_after=1.0)
        created = False
        if existing is None:
            # Read the phase again right before the pod is made: another writer may have
            # finished the session since this reconcile started (at kubectl speed).
            fresh = self._client.get_or_none(AGENTIC_SESSIONS.path(ns, name))
            if fresh is None:
                self.forget(key)
                return Result()
            now = st.phase_of(fresh.get("status") or {})
            if now in ("", "Creating", "Running"):
                # A racing worker made the pod and moved on between our two reads: the pod
                # is its, alive, and must stay (removing it would make a second one). An
                # emptied status is not an ending either: the next pass initialises it.
                self._clear_restart_request(ns, name, fresh)
                return Result(requeue_after=REQUEUE.get(now, REQUEUE["Pending"]))
            if now != "Pending":
                runner.remove(ns, name)
                self.forget(key)
                return Result()
            live = fresh
            created = runner.create_pod(live)
        after = self._write_status(ns, name, live, st.creating(created))
        if after is None or view(after).terminal:
            # Finished by someone else between the read and the pod: no runner behind it.
            log.info("session %s ended while its runner pod was made; removing the pod", key)
            runner.remove(ns, name)
            self.forget(key)
            return Result()
        self._clear_restart_request(ns, name, after)
        return Result(requeue_after=REQUEUE["Creating"])

    def _clear_restart_request(self, ns: str, name: str, obj: Obj) -> None:
        """A restart request is answered once the runner pod exists, by whichever worker
        saw it there: left in place, it would restart the session again when it ends."""
        if view(obj).desired_phase == "Running":
            self._patch_annotations(
                ns,
                name,
                obj,
                {DESIRED_PHASE_ANNOTATION: None},
                expect={DESIRED_PHASE_ANNOTATION: "Running"},
            )

    def _annotate_runner_identity(self, ns: str, name: str, live: Obj) -> Obj | None:
        """Name the runner's token Secret and ServiceAccount on the session, as upstream does."""
        changes: dict[str, str | None] = {
            RUNNER_TOKEN_SECRET_ANNOTATION: token_secret_name(name),
            RUNNER_SA_ANNOTATION: service_account_name(name),
        }
        return self._patch_annotations(ns, name, live, changes, expect={})

    def _creating(self, ns: str, name: str, live: Obj) -> Result:
        pod = self.runner.pod(ns, name)
        if pod is None:
            self._write_status(ns, name, live, st.pod_missing)
            return Result(requeue_after=0.5)
        if pod.deleting:
            return Result(requeue_after=1.0)
        return self._follow_pod(ns, name, live, pod)

    def _running(self, ns: str, name: str, key: str, live: Obj) -> Result:
        pod = self.runner.pod(ns, name)
        if pod is None:
            log.info("session %s: runner pod missing while Running, recreating", key)
            self._write_status(ns, name, live, st.pod_missing)
            return Result(requeue_after=0.5)
        if pod.phase in ("Succeeded", "Failed") or pod.deleting or pod.waiting_reason:
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
        self.runner.ensure_fresh_token(ns, name)
        return Result(requeue_after=REQUEUE["Running"])

    def _follow_pod(self, ns: str, name: str, live: Obj, pod: PodView) -> Result:
        after = self._write_status(ns, name, live, st.from_pod(pod, self._clock()))
        phase = view(after).phase if after is not None else ""
        if after is None or phase in TERMINAL_PHASES:
            # Completed or Failed (a fatal waiting reason included): nothing keeps running.
            self.runner.remove(ns, name)
            self.forget(f"{ns}/{name}")
            return Result()
        return Result(requeue_after=REQUEUE.get(phase, REQUEUE["Creating"]))

    def _stopping(self, ns: str, name: str, live: Obj) -> Result:
        if self.runner.live_pod(ns, name) is not None:
            self.runner.remove(ns, name)
            return Result(requeue_after=REQUEUE["Stopping"])
        after = self._write_status(ns, name, live, st.stopped)
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
        runner_api = self._ctx.runner
        try:
            for url, repo in want_urls.items():
                if url not in have_urls:
                    runner_api.add_repo(namespace=ns, session=name, repo=repo)
            for url, repo in have_urls.items():
                if url not in want_urls:
                    runner_api.remove_repo(
                        namespace=ns, session=name, name=str(repo.get("name") or url)
                    )
            workflow = spec.get("activeWorkflow")
            applied = status.get("reconciledWorkflow") or {}
            if isinstance(workflow, dict) and any(
                workflow.get(k) != applied.get(k) for k in ("gitUrl", "branch", "path")
            ):
                runner_api.set_workflow(namespace=ns, session=name, workflow=workflow)
        except RunnerApiError as e:
            log.warning("session %s/%s: spec reconciliation: %s", ns, name, e)
            return self._write_status(ns, name, live, st.spec_failed(str(e)))
        return self._write_status(ns, name, live, st.spec_applied)

    # -- inactivity ---------------------------------------------------------------------------------

    def _auto_stop_due(self, ns: str, v: SessionView) -> bool:
        if v.phase != "Running":
            return False
        project = None if v.inactivity_timeout is not None else self._ctx.timeouts.get(ns)
        timeout = resolve_timeout(
            v, project=project, fallback=self._ctx.config.fallback_inactivity_timeout
        )
        return should_auto_stop(v, timeout=timeout, now=self._clock())

    # -- writes with optimistic concurrency -----------------------------------------------------

    def _write_status(self, ns: str, name: str, live: Obj, mutate: st.Mutation) -> Obj | None:
        """Apply `mutate` to the freshest object and PUT its status; retried on 409.

        Returns the object as stored afterwards (as read, if nothing needed writing), or
        None when the session is gone.
        """
        written: list[tuple[Obj, Obj]] = []

        def apply(obj: Obj) -> Obj | None:
            written.clear()  # only the attempt that is stored counts as a transition
            before = obj.get("status") or {}
            new_status = mutate(obj, dict(before))
            if new_status is None or new_status == before:
                return None
            written.append((before, new_status))
            obj["status"] = new_status
            return obj

        stored = update_with_retry(
            self._client,
            AGENTIC_SESSIONS.path(ns, name),
            apply,
            current=live,
            write_path=AGENTIC_SESSIONS.path(ns, name, "status"),
        )
        if stored is not None and written:
            self._record_transition(ns, name, *written[0])
        return stored

    def _record_transition(self, ns: str, name: str, before: Obj, after: Obj) -> None:
        old = str(before.get("phase") or "")
        new = str(after.get("phase") or "")
        if old == new:
            return
        # One line per phase change (not per reconcile): a session that stays put can then be
        # told apart from one the operator never looked at again.
        log.info("session %s/%s: %s -> %s", ns, name, old or "None", new or "Unknown")
        m = self._ctx.metrics
        m.phase_transition(ns, old or "None", new or "Unknown")
        if new == "Pending" and old in ("", *TERMINAL_PHASES, "Stopping"):
            m.session_started(ns)
        if new in TERMINAL_PHASES:
            m.session_completed(ns, new)
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
    ) -> Obj | None:
        """Set annotations only while `expect` holds (never undo a newer user request)."""

        def apply(obj: Obj) -> Obj | None:
            ann = (obj.get("metadata") or {}).get("annotations") or {}
            if any(str(ann.get(k) or "").strip() != v for k, v in expect.items()):
                return None
            if still is not None and not still(obj):
                return None
            if all(ann.get(k) == v for k, v in changes.items()):
                return None
            merged = {**ann, **changes}
            obj["metadata"]["annotations"] = {k: v for k, v in merged.items() if v is not None}
            return obj

        return update_with_retry(self._client, AGENTIC_SESSIONS.path(ns, name), apply, current=live)

    def _clear_stop_annotations(self, ns: str, name: str, live: Obj) -> None:
        self._patch_annotations(
            ns,
            name,
            live,
            {DESIRED_PHASE_ANNOTATION: None, STOP_REASON_ANNOTATION: None},
            expect={DESIRED_PHASE_ANNOTATION: "Stopped"},
        )


def _owned_by(pod: Obj, session: Obj) -> bool:
    uid = (session.get("metadata") or {}).get("uid")
    refs = (pod.get("metadata") or {}).get("ownerReferences") or ()
    return any(isinstance(r, dict) and r.get("uid") == uid for r in refs)
