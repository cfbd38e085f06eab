"""Bulk load for a run: namespaces, AgenticSessions in a given phase, pods, fast.

The upstream reproducer ran one `kubectl apply` and one `kubectl patch` per session: a new
process, a kubeconfig parse and a TLS handshake per object, a few objects per second, so the
operator was measured mostly while idle. Here every request goes over one shared connection
pool from a thread pool, bodies are prebuilt JSON, and nothing is deserialised that is not
read: hundreds of sessions per second including the status write.

Two ordering rules keep the load honest:
- a session is created and moved to its phase while its namespace is NOT yet managed, and
  the namespace is labelled managed afterwards. Otherwise the operator can see a fresh
  Pending session in the gap before the status write and start a real runner pod for it
  (the upstream script raced exactly this); the operator lists a namespace's objects when it
  becomes managed, so it still sees every session. Each namespace is labelled as soon as
  its own objects are in, not after the whole batch: the operator's work on the first
  namespaces then overlaps the creation of the rest, and the batch settles sooner;
- Running sessions get a parked runner pod (the operator's name, labels and owner, but a
  scheduler name nobody serves): the operator finds its pod and leaves the session Running,
  and no container starts on a node that has two cores for everybody.

An apiserver that restarts mid-batch is waited for (bounded) and the batch goes on: a create
whose answer was lost comes back as AlreadyExists and counts as done. Everything carries
the run-id label, so cleanup finds it again without any local state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from agentic_operator.contract import AGENTIC_SESSIONS, API_VERSION, MANAGED_LABEL
from agentic_operator.kube import TransportError
from agentic_operator.resources import NAMESPACES, PODS, SECRETS
from triage import custom_objects
from triage.bodies import (
    NAMESPACE_PREFIX,
    SessionShape,
    namespace_body,
    namespace_name,
    pod_body,
    run_labels,
    runner_labels,
    runner_secrets_body,
    session_body,
    session_name,
    status_body,
    status_doc,
)
from triage.cluster import Cluster
from triage.custom_objects import ObjectTemplate, ServedKind
from triage.errors import RunFailedError
from triage.scenario import BatchPlan, NamespacePlan

MERGE_PATCH = "application/merge-patch+json"
#: How a new session's status is written: the created object with its status set, PUT to
#: the status subresource (the default), or a merge patch of the status alone.
StatusWrite = Literal["put", "patch"]
#: Answers worth waiting out: throttling and an apiserver that is restarting.
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


def _http_failure(method: str, path: str, status: int, data: bytes) -> RunFailedError:
    detail = data[:300].decode("utf-8", "replace")
    return RunFailedError(f"{method} {path} returned HTTP {status}: {detail}")


def _offsets(templates: Sequence[tuple[ObjectTemplate, ServedKind]]) -> list[int]:
    out, total = [], 0
    for t, _ in templates:
        out.append(total)
        total += t.count
    return out


@dataclass
class BatchResult:
    namespaces: int = 0
    sessions: int = 0
    objects: int = 0
    #: Bytes of JSON created (session bodies and their status).
    payload_bytes: int = 0
    seconds: float = 0.0
    #: Seconds spent waiting for an apiserver that was not answering.
    outage_seconds: float = 0.0
    #: (namespace, session) -> epoch seconds when the apiserver accepted the create.
    created: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: BatchResult) -> None:
        """Count another batch in (a run's totals are the sum of its batches)."""
        self.namespaces += other.namespaces
        self.sessions += other.sessions
        self.objects += other.objects
        self.payload_bytes += other.payload_bytes
        self.seconds += other.seconds
        self.outage_seconds += other.outage_seconds


@dataclass
class _Tally:
    objects: int = 0
    payload: int = 0
    outage: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, objects: int = 1, payload: int = 0) -> None:
        with self.lock:
            self.objects += objects
            self.payload += payload


class _LabelWhenDone:
    """Labels each namespace managed once the last of its objects is in (module docstring)."""

    def __init__(
        self, label: Callable[[NamespacePlan], None], managed: Sequence[NamespacePlan],
        owners: Iterable[NamespacePlan],
    ) -> None:  # fmt: skip
        self._label = label
        self._lock = threading.Lock()
        self._managed = {ns.index: ns for ns in managed}
        self._left = dict.fromkeys(self._managed, 0)
        for ns in owners:
            if ns.index in self._left:
                self._left[ns.index] += 1
        self._labelled: set[int] = set()

    def after(self, fn: Callable[[Any], T]) -> Callable[[Any], T]:
        """`fn` for one item of a namespace, then its label if that was the last item."""

        def one(item: Any) -> T:
            out = fn(item)
            ns: NamespacePlan = item[0]
            with self._lock:
                if ns.index not in self._left:
                    return out
                self._left[ns.index] -= 1
                last = self._left[ns.index] == 0
            if last:
                self._label(ns)
                with self._lock:
                    self._labelled.add(ns.index)
            return out

        return one

    def unlabelled(self) -> list[NamespacePlan]:
        with self._lock:
            return [ns for i, ns in self._managed.items() if i not in self._labelled]


class Loader:
    """Executes batch plans for one run over the cluster's shared connection pool."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        run_id: str,
        concurrency: int = 32,
        session_phase: str | None = "Completed",
        session_shape: SessionShape = "production",
        status_write: StatusWrite = "put",
        runner_secrets: bool = False,
        templates: Sequence[tuple[ObjectTemplate, ServedKind]] = (),
        namespace_labels: dict[str, str] | None = None,
        namespace_prefix: str = NAMESPACE_PREFIX,
        timeout: float = 60,
        outage_tolerance: float = 90.0,
    ) -> None:
        self._cluster = cluster
        self._shape = session_shape
        self._status_write = status_write
        self._run_id = run_id
        self._phase = session_phase
        self._runner_secrets = runner_secrets
        self._templates = tuple(templates)
        self._namespace_labels = dict(namespace_labels or {})
        self._prefix = namespace_prefix
        self._timeout = timeout
        self._outage_tolerance = outage_tolerance
        self._concurrency = max(concurrency, 1)
        cluster.client.resize_pool(self._concurrency)
        # One executor for the whole run: threads are reused across batches.
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="triage-load")
        self._sessions: list[tuple[str, str]] = []  # every session created, for churn
        self._churn_round = 0
        self._tally = _Tally()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sessions_created(self) -> int:
        return len(self._sessions)

    # -- requests ---------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, body: bytes | None, *, content_type: str
    ) -> tuple[int, bytes]:
        """One request; an apiserver that does not answer is waited for, up to a bound."""
        start: float | None = None
        delay = 0.5
        while True:
            try:
                status, data = self._cluster.client.send(
                    method, path, body=body, content_type=content_type, timeout=self._timeout
                )
                if status not in _RETRY_STATUS:
                    break
                problem = f"HTTP {status}"
            except TransportError as e:
                problem = f"{e.__class__.__name__}: {e}"
            now = time.monotonic()
            start = start if start is not None else now
            if now - start > self._outage_tolerance:
                raise RunFailedError(
                    f"{method} {path}: the apiserver did not answer for "
                    f"{self._outage_tolerance:.0f}s ({problem})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if start is not None:
            with self._tally.lock:
                self._tally.outage = max(self._tally.outage, time.monotonic() - start)
        return status, data

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        ok: Iterable[int],
        content_type: str = "application/json",
    ) -> bytes:
        status, data = self._send(method, path, body, content_type=content_type)
        if status not in ok:
            raise _http_failure(method, path, status, data)
        return data

    def _create(self, collection: str, name: str, body: bytes) -> bytes:
        """POST; an AlreadyExists after an outage is a create whose answer was lost."""
        status, data = self._send("POST", collection, body, content_type="application/json")
        if status == 201:
            return data
        if status == 409 and b"AlreadyExists" in data:
            status, data = self._send("GET", f"{collection}/{name}", None, content_type="")
            if status == 200:
                return data
        raise _http_failure("POST", collection, status, data)

    def _map(self, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        # list() re-raises the first worker exception here, in the caller's thread.
        return list(self._pool.map(fn, items))

    # -- the phases of a batch ----------------------------------------------------------------

    def run_batch(self, plan: BatchPlan) -> BatchResult:
        """Create everything `plan` describes; returns counts and per-session create times."""
        t0 = time.monotonic()
        self._tally = tally = _Tally()
        result = BatchResult()
        shape = plan.shape or self._shape
        # The label that lets the operator in is written last (see the module docstring),
        # unless the operator is meant to act on Pending sessions (burst).
        label_later = self._phase is not None
        self._map(
            lambda ns: self._create_namespace(ns, managed=ns.managed and not label_later),
            plan.namespaces,
        )
        result.namespaces = len(plan.namespaces)
        tally.add(len(plan.namespaces))
        if self._runner_secrets:
            self._map(self._create_runner_secrets, [ns for ns in plan.namespaces if ns.managed])

        work = [(ns, j) for ns in plan.namespaces for j in range(ns.sessions)]
        noise = [(ns, k) for ns in plan.namespaces for k in range(ns.noise_pods)]
        per_ns = sum(t.count for t, _ in self._templates)
        objects = [
            (ns, t, kind, i, ns.index * per_ns + offset + i)
            for ns in plan.namespaces
            for offset, (t, kind) in zip(_offsets(self._templates), self._templates, strict=True)
            for i in range(t.count)
        ]
        managed = [ns for ns in plan.namespaces if ns.managed] if label_later else []
        owners = [item[0] for item in work] + [item[0] for item in noise]
        labels = _LabelWhenDone(self._mark_managed, managed, owners + [o[0] for o in objects])
        created = self._map(
            labels.after(lambda item: self._create_session(item[0], item[1], shape)), work
        )
        for key, when in created:
            result.created[key] = when
        result.sessions = len(created)
        self._map(labels.after(lambda item: self._create_noise_pod(item[0], item[1])), noise)
        self._map(labels.after(lambda item: self._create_object(*item)), objects)
        # Objects from templates are the run's unit when it creates no sessions.
        if not work:
            result.sessions = len(objects)
        # Namespaces with nothing in them, and any whose label failed in a worker.
        self._map(self._mark_managed, labels.unlabelled())
        # Recorded before churning, so this batch's own sessions are churned too.
        self._sessions.extend(result.created)
        for _ in range(plan.churn_rounds):
            self.churn()
        result.objects = tally.objects
        result.payload_bytes = tally.payload
        result.outage_seconds = round(tally.outage, 1)
        result.seconds = time.monotonic() - t0
        return result

    def _create_namespace(self, ns: NamespacePlan, *, managed: bool) -> None:
        name = namespace_name(self._run_id, ns.index, self._prefix)
        body = namespace_body(
            name, run_id=self._run_id, managed=managed, extra=self._namespace_labels
        )
        self._create(NAMESPACES.path(), name, body)

    def _create_object(
        self, ns: NamespacePlan, t: ObjectTemplate, kind: ServedKind, index: int, n: int
    ) -> None:
        namespace = namespace_name(self._run_id, ns.index, self._prefix)
        data = custom_objects.body(
            t, namespace=namespace, labels=run_labels(self._run_id), run_id=self._run_id,
            ns_index=ns.index, index=index, n=n,
        )  # fmt: skip
        collection = kind.collection(t, namespace)
        name = json.loads(data)["metadata"]["name"]
        created = self._create(collection, name, data)
        size = len(data)
        if t.status is not None:
            obj = json.loads(created)
            obj["status"] = custom_objects.render(
                t.status, run_id=self._run_id, namespace=namespace, ns_index=ns.index,
                index=index, n=n,
            )  # fmt: skip
            body = json.dumps(obj, separators=(",", ":")).encode()
            sub = "/status" if kind.status_subresource else ""
            self._request("PUT", f"{collection}/{name}{sub}", body, ok=(200,))
            size += len(json.dumps(obj["status"]))
        self._tally.add(1, size)

    def _create_runner_secrets(self, ns: NamespacePlan) -> None:
        namespace = namespace_name(self._run_id, ns.index, self._prefix)
        body = runner_secrets_body(namespace, run_id=self._run_id)
        self._create(SECRETS.path(namespace), "ambient-runner-secrets", body)
        self._tally.add()

    def _mark_managed(self, ns: NamespacePlan) -> None:
        name = namespace_name(self._run_id, ns.index, self._prefix)
        body = json.dumps({"metadata": {"labels": {MANAGED_LABEL: "true"}}}).encode()
        self._request(
            "PATCH", NAMESPACES.path(name=name), body, ok=(200,), content_type=MERGE_PATCH
        )

    def _create_session(
        self, ns: NamespacePlan, j: int, shape: SessionShape
    ) -> tuple[tuple[str, str], float]:
        namespace = namespace_name(self._run_id, ns.index, self._prefix)
        name = session_name(ns.index, j)
        base = AGENTIC_SESSIONS.path(namespace)
        body = session_body(
            namespace=namespace, name=name, run_id=self._run_id, n=ns.index * 1000 + j, shape=shape
        )
        data = self._create(base, name, body)
        created_at = time.time()
        # Runners of the production mix are Running sessions; everything else takes the
        # scenario's phase.
        phase = "Running" if j < ns.runner_pods else self._phase
        parsed = None
        status_bytes = 0
        if phase is not None:
            parsed, status_bytes = self._write_status(f"{base}/{name}/status", data, phase, shape)
        self._tally.add(1, len(body) + status_bytes)
        if phase == "Running":
            uid = (parsed or json.loads(data))["metadata"]["uid"]
            owner = {
                "apiVersion": API_VERSION,
                "kind": AGENTIC_SESSIONS.kind,
                "name": name,
                "uid": uid,
                "controller": True,
            }
            pod = pod_body(
                f"{name}-runner",
                namespace=namespace,
                run_id=self._run_id,
                labels=runner_labels(name),
                owner=owner,
                # Production-mix runners really run (there are few); Running scenarios park.
                parked=j >= ns.runner_pods,
            )
            self._create(PODS.path(namespace), f"{name}-runner", pod)
            self._tally.add()
        return (namespace, name), created_at

    def _write_status(
        self, path: str, created: bytes, phase: str, shape: SessionShape
    ) -> tuple[dict[str, Any] | None, int]:
        """Move a just-created session to `phase` through the status subresource.

        Returns the created object if it had to be parsed (for the PUT), so the caller does
        not parse it again, and the size of the status written.

        A PUT of the created object with its status set costs the apiserver less than a
        merge patch (no patch to apply: in a CPU profile of a bulk load, applying the merge
        patch is about a tenth of the apiserver's time, and the apiserver is what bounds the
        rate). The PUT carries the create's resourceVersion, so if anything touched the
        session in between, it gets 409 and the merge patch, which needs no version, is used.
        """
        doc = status_doc(phase, shape=shape)
        patch = json.dumps({"status": doc}, separators=(",", ":")).encode()
        obj: dict[str, Any] | None = None
        if self._status_write == "put":
            obj = json.loads(created)
            obj["status"] = doc
            body = json.dumps(obj, separators=(",", ":")).encode()
            status, data = self._send("PUT", path, body, content_type="application/json")
            if status == 200:
                return obj, len(patch)
            if status != 409:
                raise _http_failure("PUT", path, status, data)
        self._request("PATCH", path, patch, ok=(200,), content_type=MERGE_PATCH)
        return obj, len(patch)

    def _create_noise_pod(self, ns: NamespacePlan, k: int) -> None:
        namespace = namespace_name(self._run_id, ns.index, self._prefix)
        body = pod_body(
            f"noise-{k:03d}", namespace=namespace, run_id=self._run_id, labels={"app": "noise"}
        )
        self._create(PODS.path(namespace), f"noise-{k:03d}", body)
        self._tally.add()

    def churn(self) -> int:
        """Rewrite the status (and its conditions) of every session created so far once."""
        self._churn_round += 1
        round_ = self._churn_round
        phase = self._phase or "Running"
        body = status_body(phase, round_=round_)

        def one(key: tuple[str, str]) -> None:
            ns, name = key
            path = AGENTIC_SESSIONS.path(ns, name, "status")
            self._request("PATCH", path, body, ok=(200,), content_type=MERGE_PATCH)

        self._map(one, list(self._sessions))
        return len(self._sessions)
