"""An AgenticSession operator written with kopf, the way a kopf user would write one.

It stands for the kopf-based Python operators that triage's users bring, so that triage can
be tested against a real one: its memory is kopf's (the watch streams, the per-object memories
and workers, the in-memory index, the aiohttp client), not a stand-in's, and memray can blame
kopf's own internals for what grows. Its runtime venv has memray (an operator whose image
ships memray) but not py-spy.

What it does:
- `sessions_by_phase`: a kopf index of every session by phase; kopf keeps one entry per object;
- `track_session`: an event handler that remembers each session's phase and counts the phase
  transitions it sees (user-level state, one small tuple per session), and acknowledges a new
  session that has no `status.phase` yet: phase Pending plus a Reconciled condition with reason
  AcknowledgedByKopf, written by kopf through the status subresource. kopf's patches are
  unconditional merge patches: a writer that sets the status right after creating a session
  (triage's loader does) can have it overwritten with Pending when kopf handles the creation
  after that write; the other two test operators write on the condition of the version seen;
- `sessions_probe`: what it tracks, served by kopf's liveness endpoint
  (`kopf run --liveness=http://127.0.0.1:PORT/healthz`).

Which namespaces it acts on is kopf's own choice of scope: `kopf run --all-namespaces`, or
`kopf run --namespace='oom-repro-ab12-*'` (globs, comma-separated, `!` to exclude; kopf then
watches namespaces and runs one session watch per matching namespace).

Run: `kopf run --standalone --liveness=http://127.0.0.1:18090/healthz -m kopf_sessions -A`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

import kopf

GROUP, VERSION, PLURAL = "vteam.ambient-code", "v1alpha1", "agenticsessions"
ACK_REASON = "AcknowledgedByKopf"

#: "namespace/name" -> (phase, resourceVersion) of every session seen and not deleted.
SEEN: dict[str, tuple[str, str]] = {}
#: (from phase, to phase) -> how often it was seen.
TRANSITIONS: Counter[tuple[str, str]] = Counter()
ACKNOWLEDGED = 0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler failures as Kubernetes Events, not every info line.
    settings.posting.level = logging.WARNING
    # Re-establish long watches now and then, as operators behind load balancers do.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, the apiserver the pod's environment names; elsewhere, the kubeconfig.

    kopf's own service-account login always dials kubernetes.default.svc, which a pod on the
    host network of a node without cluster DNS cannot resolve; in-cluster clients use
    KUBERNETES_SERVICE_HOST/PORT, and so does this.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    info = kopf.login_with_service_account(**kwargs) if host else None
    if info is None:
        return kopf.login_with_kubeconfig(**kwargs)
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://{f'[{host}]' if ':' in host else host}:{port}"
    return kopf.ConnectionInfo(
        server=server,
        ca_path=info.ca_path,
        token=info.token,
        default_namespace=info.default_namespace,
        priority=info.priority,
    )


@kopf.index(GROUP, VERSION, PLURAL)
def sessions_by_phase(
    name: str, namespace: str, status: kopf.Status, **_: Any
) -> dict[str, tuple[str, str]]:
    return {str(status.get("phase") or "Pending"): (namespace, name)}


def acknowledgement(generation: int, now: str) -> dict[str, Any]:
    """The status a new session gets: Pending, seen by this operator."""
    return {
        "phase": "Pending",
        "observedGeneration": generation,
        "conditions": [
            {
                "type": "Reconciled",
                "status": "True",
                "reason": ACK_REASON,
                "message": "seen by the kopf-sessions test operator",
                "lastTransitionTime": now,
                "observedGeneration": generation,
            }
        ],
    }


@kopf.on.event(GROUP, VERSION, PLURAL)
def track_session(
    event: kopf.RawEvent,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    global ACKNOWLEDGED
    key = f"{meta.namespace}/{meta.name}"
    if event.get("type") == "DELETED":
        SEEN.pop(key, None)
        return
    phase = str(status.get("phase") or "")
    before = SEEN.get(key, ("", ""))[0]
    if before != phase:
        TRANSITIONS[before or "-", phase or "-"] += 1
    SEEN[key] = (phase, str(meta.get("resourceVersion", "")))
    if not phase and body.get("metadata", {}).get("deletionTimestamp") is None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        patch.status.update(acknowledgement(int(meta.get("generation") or 1), now))
        ACKNOWLEDGED += 1
        logger.info("acknowledged new session %s", key)


@kopf.on.probe(id="sessions")
def sessions_probe(sessions_by_phase: kopf.Index[str, tuple[str, str]], **_: Any) -> dict[str, Any]:
    return {
        "tracked": len(SEEN),
        "by_phase": {phase: len(sessions_by_phase[phase]) for phase in sessions_by_phase},
        "acknowledged": ACKNOWLEDGED,
        "transitions": sum(TRANSITIONS.values()),
    }
