"""An AgenticSession operator on the official `kubernetes` client, written the naive way.

It stands for the Python operators that triage's users bring when they are built on the
generated client and keep whole objects: every AgenticSession it watches stays in a dict as
the full object the API returned (spec, status, managedFields), as naive operators and the
unmodified upstream Go operator do, so its memory grows with every session. Its runtime venv
holds neither memray nor py-spy (an operator whose image has no profiler): triage has to bring
its own tools, e.g. the py-spy sidecar image.

What it does: list, then watch AgenticSessions; keep each whole object in `SESSIONS`; a new
session without `status.phase` is acknowledged (phase Pending plus a Reconciled condition with
reason AcknowledgedByClientSessions, merge-patched through the status subresource on the
condition that the session has not changed since it was seen). It serves
`GET /healthz` (JSON: cached sessions, namespaces, acknowledged) on HEALTH_ADDR.

Which namespaces it acts on (only one operator may act on a namespace at a time):
- WATCH_NAMESPACES: comma-separated globs (`oom-repro-ab12-*`); NAMESPACE_SELECTOR: a label
  selector on namespaces. With either, a namespace watch (filtered by the selector) starts one
  session-watch thread per matching namespace and stops it when the namespace goes away or
  stops matching (its sessions leave the cache then).
- Neither: one cluster-wide watch.

The entry point is the `client-sessions` console script; it has no command-line options, so
the image's entrypoint alone runs it and everything comes from the environment.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "vteam.ambient-code", "v1alpha1", "agenticsessions"
ACK_REASON = "AcknowledgedByClientSessions"
log = logging.getLogger("client_sessions")


def acknowledgement(generation: int, now: str, resource_version: str) -> dict[str, Any]:
    """The status patch a new session gets: Pending, seen by this operator. The
    resourceVersion makes it conditional: a session whose status another writer has set since
    is not overwritten (409), and its next event is handled instead."""
    return {
        "metadata": {"resourceVersion": resource_version},
        "status": {
            "phase": "Pending",
            "observedGeneration": generation,
            "conditions": [
                {
                    "type": "Reconciled",
                    "status": "True",
                    "reason": ACK_REASON,
                    "message": "seen by the client-sessions test operator",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                }
            ],
        },
    }


def parse_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(eq=False)
class Operator:
    api: client.CustomObjectsApi
    core: client.CoreV1Api
    _: KW_ONLY
    patterns: list[str]
    selector: str
    watch_timeout: int = 120
    #: (namespace, name) -> the whole session object, as the API returned it.
    sessions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict, init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    #: namespace ("" for cluster-wide) -> the stop flag of its watch thread.
    scopes: dict[str, threading.Event] = field(default_factory=dict, init=False)
    synced: set[str] = field(default_factory=set, init=False)
    acknowledged: int = field(default=0, init=False)
    stopping: threading.Event = field(default_factory=threading.Event, init=False)

    @property
    def cluster_wide(self) -> bool:
        return not self.patterns and not self.selector

    # -- sessions -------------------------------------------------------------------------------

    def handle(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            with self.lock:
                self.sessions.pop(key, None)
            return
        with self.lock:
            self.sessions[key] = obj
        if not (obj.get("status") or {}).get("phase") and not meta.get("deletionTimestamp"):
            self.acknowledge(obj)

    def acknowledge(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                acknowledgement(int(meta.get("generation") or 1), now, meta["resourceVersion"]),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("acknowledging %s/%s: %s", meta["namespace"], meta["name"], e.reason)
            return
        self.acknowledged += 1
        log.info("acknowledged new session %s/%s", meta["namespace"], meta["name"])

    def _lister(self, namespace: str) -> tuple[Callable[..., Any], tuple[str, ...]]:
        if namespace:
            return self.api.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
        return self.api.list_cluster_custom_object, (GROUP, VERSION, PLURAL)

    def watch_sessions(self, namespace: str, stop: threading.Event) -> None:
        """List, then watch, one scope ("" = all namespaces) until `stop` is set."""
        fn, args = self._lister(namespace)
        rv = ""
        while not (stop.is_set() or self.stopping.is_set()):
            try:
                if not rv:
                    listed = fn(*args)
                    items = listed["items"]
                    keys = set()
                    for obj in items:
                        # A list's items carry no kind; the cache keeps what a watch would.
                        obj.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                        obj.setdefault("kind", "AgenticSession")
                        keys.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
                    with self.lock:  # drop what went away while we were not watching
                        for key in [k for k in self.sessions if _in_scope(k, namespace)]:
                            if key not in keys:
                                del self.sessions[key]
                    for obj in items:
                        self.handle("ADDED", obj)
                    rv = listed["metadata"]["resourceVersion"]
                    self.synced.add(namespace)
                w = watch.Watch()
                for event in w.stream(
                    fn, *args, resource_version=rv, timeout_seconds=self.watch_timeout
                ):
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    self.handle(event["type"], obj)
                    if stop.is_set() or self.stopping.is_set():
                        w.stop()
            except ApiException as e:
                if e.status == 410:  # too old: list again
                    rv = ""
                    continue
                log.warning("watching sessions in %r: %s %s", namespace, e.status, e.reason)
                time.sleep(1)
            except Exception as e:
                log.warning("watching sessions in %r: %s", namespace, e)
                time.sleep(1)
        with self.lock:
            if self.scopes.get(namespace) not in (None, stop):
                return  # the scope was started again: the new thread owns its entries
            for key in [k for k in self.sessions if _in_scope(k, namespace)]:
                del self.sessions[key]
            self.synced.discard(namespace)

    # -- namespaces -----------------------------------------------------------------------------

    def start_scope(self, namespace: str) -> None:
        with self.lock:
            if namespace in self.scopes:
                return
            stop = self.scopes[namespace] = threading.Event()
        threading.Thread(
            target=self.watch_sessions,
            args=(namespace, stop),
            name=f"watch-{namespace}",
            daemon=True,
        ).start()
        log.info("watching sessions in %s", namespace or "all namespaces")

    def stop_scope(self, namespace: str) -> None:
        with self.lock:
            stop = self.scopes.pop(namespace, None)
        if stop is not None:
            stop.set()
            log.info("stopped watching namespace %s", namespace)

    def namespace_event(self, kind: str, ns: dict[str, Any]) -> None:
        name = ns["metadata"]["name"]
        if kind != "DELETED" and matches(name, self.patterns):
            self.start_scope(name)
        else:
            self.stop_scope(name)

    def list_namespace_names(self) -> tuple[set[str], str]:
        """The selected namespaces' names, a page at a time (a shared cluster can have
        thousands of namespaces; one unpaged list of models costs tens of MiB)."""
        names: set[str] = set()
        token = None
        while True:
            page = self.core.list_namespace(
                label_selector=self.selector, limit=250, _continue=token
            )
            names.update(ns.metadata.name for ns in page.items)
            token = page.metadata._continue
            if not token:
                return names, page.metadata.resource_version

    def watch_namespaces(self) -> None:
        rv = ""
        while not self.stopping.is_set():
            try:
                if not rv:
                    names, rv = self.list_namespace_names()
                    for name in list(self.scopes):
                        if name not in names:
                            self.stop_scope(name)
                    for name in names:
                        self.namespace_event("ADDED", {"metadata": {"name": name}})
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_namespace,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=self.watch_timeout,
                    deserialize=False,  # only names are read: no V1Namespace models
                ):
                    raw = event["object"]
                    rv = raw["metadata"]["resourceVersion"]
                    self.namespace_event(event["type"], raw)
            except ApiException as e:
                if e.status == 410:
                    rv = ""
                    continue
                log.warning("watching namespaces: %s %s", e.status, e.reason)
                time.sleep(1)
            except Exception as e:
                log.warning("watching namespaces: %s", e)
                time.sleep(1)

    def run(self) -> None:
        if self.cluster_wide:
            log.info("acting on AgenticSessions in all namespaces")
            self.start_scope("")
        else:
            log.info(
                "acting on AgenticSessions in namespaces matching %s, selector %r",
                self.patterns or "*",
                self.selector,
            )
            threading.Thread(target=self.watch_namespaces, name="namespaces", daemon=True).start()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            scopes = [s for s in self.scopes if s]
            return {
                "sessions": len(self.sessions),
                "namespaces": len(scopes),
                "synced": all(s in self.synced for s in self.scopes),
                "acknowledged": self.acknowledged,
                "clusterWide": self.cluster_wide,
            }


def _in_scope(key: tuple[str, str], namespace: str) -> bool:
    return not namespace or key[0] == namespace


def serve_health(op: Operator, addr: str) -> ThreadingHTTPServer:
    host, _, port = addr.rpartition(":")

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                self.send_error(404)
                return
            body = json.dumps(op.stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health on http://%s/healthz", addr)
    return server


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    # One connection per namespace watch: a pool that holds them all.
    cfg.connection_pool_maxsize = int(os.environ.get("CONNECTION_POOL_SIZE", "256"))
    api_client = client.ApiClient(cfg)
    op = Operator(
        client.CustomObjectsApi(api_client),
        client.CoreV1Api(api_client),
        patterns=parse_patterns(os.environ.get("WATCH_NAMESPACES", "")),
        selector=os.environ.get("NAMESPACE_SELECTOR", ""),
        watch_timeout=int(os.environ.get("WATCH_TIMEOUT_SECONDS", "120")),
    )
    serve_health(op, os.environ.get("HEALTH_ADDR", "127.0.0.1:8082"))
    op.run()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    last = ""
    while not done.wait(30):
        st = op.stats()
        line = f"cache: {st['sessions']} sessions in {st['namespaces']} namespaces"
        if line != last:
            log.info(line)
            last = line
    op.stopping.set()
    log.info("shutting down")


if __name__ == "__main__":
    main()
