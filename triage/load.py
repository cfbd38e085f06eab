"""Bulk load for a run: namespaces, AgenticSessions in a given phase, pods, fast.

The upstream reproducer ran one `kubectl apply` and one `kubectl patch` per session: a new
process, a kubeconfig parse and a TLS handshake per object, a few objects per second, so the
operator was measured mostly while idle. Here every request goes over one shared urllib3 pool
(`Cluster.raw`) from a thread pool, bodies are prebuilt JSON, and nothing is deserialised
that is not read: hundreds of sessions per second including the status write.

Two ordering rules keep the load honest:
- a session is created and moved to its phase while its namespace is NOT yet managed, and
  the namespace is labelled managed afterwards. Otherwise the operator can see a fresh
  Pending session in the gap before the status write and start a real runner pod for it
  (the upstream script raced exactly this); the operator lists a namespace's objects when it
  becomes managed, so it still sees every session;
- Running sessions get a parked runner pod (the operator's name, labels and owner, but a
  scheduler name nobody serves): the operator finds its pod and leaves the session Running,
  and no container starts on a node that has two cores for everybody.

Everything carries the run-id label, so `cleanup` finds it again without any local state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import urllib3

from triage.errors import RunFailedError
from triage.kube import Cluster
from triage.scenario import BatchPlan, NamespacePlan, SessionShape

MANAGED_LABEL = "ambient-code.io/managed"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_VALUE = "oom-reproducer"
RUN_ID_LABEL = "triage.ambient-code.io/run-id"
GROUP_VERSION = "vteam.ambient-code/v1alpha1"
RUNNER_IMAGE = "localhost/ambient-runner:dev"
#: A scheduler name nobody serves: the pod exists, is cached and listed, and never runs.
PARKED_SCHEDULER = "triage-parked"
MERGE_PATCH = "application/merge-patch+json"
#: How a new session's status is written: the created object with its status set, PUT to
#: the status subresource (the default), or a merge patch of the status alone.
StatusWrite = Literal["put", "patch"]

T = TypeVar("T")


def namespace_name(run_id: str, index: int) -> str:
    """`oom-repro-<run suffix>-NNNN`, like the upstream script's but unique per run."""
    return f"oom-repro-{run_id.rsplit('-', 1)[-1]}-{index:04d}"


def session_name(ns_index: int, j: int) -> str:
    return f"session-{ns_index:04d}-{j:03d}"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- object bodies ------------------------------------------------------------------------------

_PROMPT = (
    "You are working in the {repo} repository. The nightly integration suite started failing "
    "after the dependency bump in the last release: the session store tests time out when the "
    "informer relists under load, and the controller logs show repeated conflicts on status "
    "updates. Reproduce the failure locally with the smallest possible fixture, find the root "
    "cause, and propose a minimal fix with a regression test. Keep the public API unchanged. "
    "When you touch the reconciler, explain in the PR description why the change is safe for "
    "sessions that are already Running, and what happens to sessions created while the "
    "operator restarts. Run the linters and the full unit test suite before pushing, attach "
    "the before/after timings of the informer relist, and link the upstream issue. If the fix "
    "needs a configuration change, document the new option in the operator README with its "
    "default and the reason for it. Do not bump unrelated dependencies.\n\n"
    "Context from the incident channel: the operator pod restarted four times overnight with "
    "reason OOMKilled while the number of AgenticSessions grew past four thousand, most of "
    "them Completed. Heap profiles taken before the restarts point at the informer caches. "
    "Check whether terminal sessions still carry their full spec and status in memory, and "
    "whether pods that are not runners are cached at all. Compare the resident set size "
    "of the operator before and after a full relist with the same number of sessions, and "
    "write down the numbers you measured in the pull request, not estimates. If you find a "
    "second problem on the way, open a separate issue for it instead of widening this "
    "change. Session {n}."
)


def session_body(
    *, namespace: str, name: str, run_id: str, n: int, shape: SessionShape = "production"
) -> bytes:
    """A session shaped like production ones (~5-6 KB of JSON once the status is written),
    or a minimal one of a few hundred bytes (see `SessionShape`)."""
    labels = {RUN_ID_LABEL: run_id, PART_OF_LABEL: PART_OF_VALUE}
    if shape == "minimal":
        minimal = {
            "apiVersion": GROUP_VERSION,
            "kind": "AgenticSession",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"displayName": f"oom-repro {n}", "initialPrompt": f"Test session {n}"},
        }
        return json.dumps(minimal, separators=(",", ":")).encode()
    repo = f"https://github.com/ambient-code/platform-{n % 17:02d}"
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "AgenticSession",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "ambient-code.io/created-by": f"user-{n % 97}@example.com",
                "ambient-code.io/display-name": f"Fix flaky informer relist #{n}",
            },
        },
        "spec": {
            "displayName": f"Fix flaky informer relist #{n}",
            "initialPrompt": _PROMPT.format(repo=repo, n=n),
            "interactive": n % 3 == 0,
            "timeout": 3600,
            "inactivityTimeout": 86400,
            "autoPushOnComplete": n % 2 == 0,
            "stopOnRunFinished": True,
            "repos": [
                {"url": repo, "branch": "main", "autoPush": False},
                {
                    "url": "https://github.com/ambient-code/shared-workflows",
                    "branch": f"feature/relist-{n % 11}",
                    "autoPush": False,
                },
                {
                    "url": "https://github.com/ambient-code/operator-test-fixtures",
                    "branch": "main",
                    "autoPush": False,
                },
            ],
            "userContext": {
                "userId": f"u-{n % 97:05d}",
                "displayName": f"Engineer {n % 97}",
                "groups": ["platform-team", "oncall", f"squad-{n % 7}"],
            },
            "llmSettings": {"model": "claude-sonnet-4-5", "temperature": 0.7, "maxTokens": 4000},
            "environmentVariables": {
                "GIT_AUTHOR_NAME": f"Engineer {n % 97}",
                "GIT_AUTHOR_EMAIL": f"user-{n % 97}@example.com",
                "PYTEST_ADDOPTS": "-x --timeout=300",
                "LOG_LEVEL": "debug",
                "FEATURE_FLAGS": "relist-backoff,status-batching,lean-cache",
                "GOFLAGS": "-mod=mod",
                "HTTP_TIMEOUT_SECONDS": "30",
                "RUNNER_WORKDIR": "/workspace/platform",
            },
            "mcpServers": {
                "custom": {
                    "issue-tracker": {
                        "command": "npx",
                        "args": ["-y", "@example/issue-tracker-mcp", "--project", f"P{n % 13}"],
                        "env": {"TRACKER_URL": "https://issues.example.com"},
                    }
                },
                "disabled": ["browser"],
            },
            "activeWorkflow": {
                "gitUrl": "https://github.com/ambient-code/workflows",
                "branch": "main",
                "path": "workflows/bugfix",
            },
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


_CONDITIONS = (
    ("SecretsReady", "SecretsAvailable", "Runner secrets are present"),
    ("PodCreated", "PodCreated", "Runner pod created"),
    ("PodScheduled", "Scheduled", "Runner pod scheduled on node1"),
    ("RunnerStarted", "ContainerRunning", "Runner container started"),
    ("ReposReconciled", "Cloned", "2 repositories cloned"),
    ("WorkflowReconciled", "WorkflowLoaded", "Workflow workflows/bugfix loaded"),
    ("Reconciled", "Reconciled", "Spec reconciled"),
)


def status_doc(
    phase: str,
    *,
    round_: int = 0,
    started: str | None = None,
    shape: SessionShape = "production",
) -> dict[str, Any]:
    """A status in `phase` with the conditions a real run leaves behind (a bare phase for a
    minimal session, as the upstream script's patch wrote it)."""
    if shape == "minimal":
        return {"phase": phase}
    ts = now_rfc3339()
    started = started or ts
    conditions = [
        {
            "type": ctype,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": started,
            "observedGeneration": 1,
        }
        for ctype, reason, message in _CONDITIONS
    ]
    terminal = phase in ("Completed", "Failed", "Stopped")
    conditions.append(
        {
            "type": "Ready",
            "status": "False" if terminal else "True",
            "reason": phase if terminal else "Running",
            "message": f"Session {phase.lower()} (update {round_})",
            "lastTransitionTime": ts if round_ else started,
            "observedGeneration": 1,
        }
    )
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "phase": phase,
        "startTime": started,
        "lastActivityTime": ts,
        "sdkSessionId": f"sdk-{round_:04d}-0b9c2f61-7d7e-4c55-9a3e-5f2f4a8d1c11",
        "sdkRestartCount": 0,
        "reconciledRepos": [
            {"url": "https://github.com/ambient-code/platform", "branch": "main", "status": "Ready"}
        ],
        "reconciledWorkflow": {
            "gitUrl": "https://github.com/ambient-code/workflows",
            "status": "Active",
        },
        "conditions": conditions,
    }
    if terminal:
        status["completionTime"] = ts
    return status


def status_body(phase: str, *, round_: int = 0, started: str | None = None) -> bytes:
    """`status_doc` as a merge patch of the status subresource."""
    doc = status_doc(phase, round_=round_, started=started)
    return json.dumps({"status": doc}, separators=(",", ":")).encode()


def namespace_body(name: str, *, run_id: str, managed: bool) -> bytes:
    labels = {PART_OF_LABEL: PART_OF_VALUE, RUN_ID_LABEL: run_id}
    if managed:
        labels[MANAGED_LABEL] = "true"
    return json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    ).encode()


def pod_body(
    name: str,
    *,
    namespace: str,
    run_id: str,
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    parked: bool = False,
) -> bytes:
    """A small pod: a busybox sleep, or a parked one that is never scheduled."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {RUN_ID_LABEL: run_id, PART_OF_LABEL: PART_OF_VALUE, **(labels or {})},
    }
    if owner:
        meta["ownerReferences"] = [owner]
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if owner else "Always",
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "main",
                "image": RUNNER_IMAGE,
                "imagePullPolicy": "Never",
                "resources": {
                    "requests": {"cpu": "1m", "memory": "4Mi"},
                    "limits": {"cpu": "50m", "memory": "16Mi"},
                },
            }
        ],
    }
    if parked:
        spec["schedulerName"] = PARKED_SCHEDULER
    return json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
        separators=(",", ":"),
    ).encode()


# -- execution ----------------------------------------------------------------------------------


def _http_failure(method: str, path: str, status: int, data: bytes) -> RunFailedError:
    detail = data[:300].decode("utf-8", "replace")
    return RunFailedError(f"{method} {path} returned HTTP {status}: {detail}")


@dataclass
class BatchResult:
    namespaces: int = 0
    sessions: int = 0
    objects: int = 0
    seconds: float = 0.0
    #: (namespace, session) -> epoch seconds when the apiserver accepted the create.
    created: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Counter:
    value: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.value += n


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
        timeout: float = 60,
    ) -> None:
        self._cluster = cluster
        self._shape = session_shape
        self._status_write = status_write
        self._run_id = run_id
        self._phase = session_phase
        self._timeout = timeout
        self._concurrency = max(concurrency, 1)
        cluster.set_pool_size(self._concurrency)
        # One executor for the whole run: threads are reused across batches.
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="triage-load")
        self._sessions: list[tuple[str, str]] = []  # every session created, for churn
        self._churn_round = 0

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
        try:
            return self._cluster.raw(
                method, path, body=body, content_type=content_type, timeout=self._timeout
            )
        except urllib3.exceptions.HTTPError as e:
            raise RunFailedError(f"{method} {path} failed: {e.__class__.__name__}: {e}") from e

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

    def _map(self, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        # list() re-raises the first worker exception here, in the caller's thread.
        return list(self._pool.map(fn, items))

    # -- the phases of a batch ----------------------------------------------------------------

    def run_batch(self, plan: BatchPlan) -> BatchResult:
        """Create everything `plan` describes; returns counts and per-session create times."""
        t0 = time.monotonic()
        result = BatchResult()
        counter = _Counter()
        # The label that lets the operator in is written last (see the module docstring),
        # unless the operator is meant to act on Pending sessions (burst).
        label_later = self._phase is not None
        self._map(
            lambda ns: self._create_namespace(ns, managed=ns.managed and not label_later),
            plan.namespaces,
        )
        result.namespaces = len(plan.namespaces)
        counter.add(len(plan.namespaces))

        work = [(ns, j) for ns in plan.namespaces for j in range(ns.sessions)]
        created = self._map(lambda item: self._create_session(item[0], item[1], counter), work)
        for key, when in created:
            result.created[key] = when
        result.sessions = len(created)

        noise = [(ns, k) for ns in plan.namespaces for k in range(ns.noise_pods)]
        self._map(lambda item: self._create_noise_pod(item[0], item[1], counter), noise)

        if label_later:
            self._map(self._mark_managed, [ns for ns in plan.namespaces if ns.managed])
        # Recorded before churning, so this batch's own sessions are churned too.
        self._sessions.extend(result.created)
        for _ in range(plan.churn_rounds):
            self.churn()
        result.objects = counter.value
        result.seconds = time.monotonic() - t0
        return result

    def _create_namespace(self, ns: NamespacePlan, *, managed: bool) -> None:
        name = namespace_name(self._run_id, ns.index)
        self._request(
            "POST",
            "/api/v1/namespaces",
            namespace_body(name, run_id=self._run_id, managed=managed),
            ok=(201,),
        )

    def _mark_managed(self, ns: NamespacePlan) -> None:
        name = namespace_name(self._run_id, ns.index)
        body = json.dumps({"metadata": {"labels": {MANAGED_LABEL: "true"}}}).encode()
        self._request(
            "PATCH", f"/api/v1/namespaces/{name}", body, ok=(200,), content_type=MERGE_PATCH
        )

    def _create_session(
        self, ns: NamespacePlan, j: int, counter: _Counter
    ) -> tuple[tuple[str, str], float]:
        namespace = namespace_name(self._run_id, ns.index)
        name = session_name(ns.index, j)
        base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/agenticsessions"
        data = self._request(
            "POST",
            base,
            session_body(
                namespace=namespace,
                name=name,
                run_id=self._run_id,
                n=ns.index * 1000 + j,
                shape=self._shape,
            ),
            ok=(201,),
        )
        created_at = time.time()
        counter.add()
        # Runners of the production mix are Running sessions; everything else takes the
        # scenario's phase.
        phase = "Running" if j < ns.runner_pods else self._phase
        parsed = None
        if phase is not None:
            parsed = self._write_status(f"{base}/{name}/status", data, phase)
        if phase == "Running":
            uid = (parsed or json.loads(data))["metadata"]["uid"]
            owner = {
                "apiVersion": GROUP_VERSION,
                "kind": "AgenticSession",
                "name": name,
                "uid": uid,
                "controller": True,
            }
            pod = pod_body(
                f"{name}-runner",
                namespace=namespace,
                run_id=self._run_id,
                labels={"app": "ambient-code-runner", "agentic-session": name},
                owner=owner,
                # Production-mix runners really run (there are few); Running scenarios park.
                parked=j >= ns.runner_pods,
            )
            self._request("POST", f"/api/v1/namespaces/{namespace}/pods", pod, ok=(201,))
            counter.add()
        return (namespace, name), created_at

    def _write_status(self, path: str, created: bytes, phase: str) -> dict[str, Any] | None:
        """Move a just-created session to `phase` through the status subresource.

        Returns the created object if it had to be parsed (for the PUT), so the caller does
        not parse it again.

        A PUT of the created object with its status set costs the apiserver less than a
        merge patch (no patch to apply: in a CPU profile of a bulk load, applying the merge
        patch is about a tenth of the apiserver's time, and the apiserver is what bounds the
        rate). The PUT carries the create's resourceVersion, so if anything touched the
        session in between, it gets 409 and the merge patch, which needs no version, is used.
        """
        doc = status_doc(phase, shape=self._shape)
        obj: dict[str, Any] | None = None
        if self._status_write == "put":
            obj = json.loads(created)
            obj["status"] = doc
            body = json.dumps(obj, separators=(",", ":")).encode()
            status, data = self._send("PUT", path, body, content_type="application/json")
            if status == 200:
                return obj
            if status != 409:
                raise _http_failure("PUT", path, status, data)
        patch = json.dumps({"status": doc}, separators=(",", ":")).encode()
        self._request("PATCH", path, patch, ok=(200,), content_type=MERGE_PATCH)
        return obj

    def _create_noise_pod(self, ns: NamespacePlan, k: int, counter: _Counter) -> None:
        namespace = namespace_name(self._run_id, ns.index)
        body = pod_body(
            f"noise-{k:03d}", namespace=namespace, run_id=self._run_id, labels={"app": "noise"}
        )
        self._request("POST", f"/api/v1/namespaces/{namespace}/pods", body, ok=(201,))
        counter.add()

    def churn(self) -> int:
        """Rewrite the status (and its conditions) of every session created so far once."""
        self._churn_round += 1
        round_ = self._churn_round
        phase = self._phase or "Running"
        body = status_body(phase, round_=round_)

        def one(key: tuple[str, str]) -> None:
            ns, name = key
            path = f"/apis/{GROUP_VERSION}/namespaces/{ns}/agenticsessions/{name}/status"
            self._request("PATCH", path, body, ok=(200,), content_type=MERGE_PATCH)

        self._map(one, list(self._sessions))
        return len(self._sessions)


# -- cleanup ------------------------------------------------------------------------------------


@dataclass
class CleanupResult:
    deleted: list[str]
    stuck: dict[str, list[str]]  # namespace -> finalizers / reasons still holding it
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.stuck


def run_namespaces(cluster: Cluster, *, run_id: str) -> list[dict[str, Any]]:
    """Every namespace this run created (by its run-id label), with its status."""
    doc = cluster.json(
        "GET", "/api/v1/namespaces", params={"labelSelector": f"{RUN_ID_LABEL}={run_id}"}
    )
    return list(doc.get("items", []))


def _holders(ns: dict[str, Any]) -> list[str]:
    finalizers = list(ns.get("spec", {}).get("finalizers") or [])
    finalizers += list(ns.get("metadata", {}).get("finalizers") or [])
    for cond in ns.get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type", "").endswith(
            ("ContentRemaining", "FinalizersRemaining", "DeletionFailure")
        ):
            finalizers.append(f"{cond['type']}: {cond.get('message', '')}")
    return finalizers or ["(terminating)"]


def cleanup(
    cluster: Cluster,
    *,
    run_id: str,
    timeout: float = 180,
    concurrency: int = 16,
    poll: float = 1.0,
) -> CleanupResult:
    """Delete the run's namespaces by label; wait up to `timeout`; name any that are stuck."""
    t0 = time.monotonic()
    names = [ns["metadata"]["name"] for ns in run_namespaces(cluster, run_id=run_id)]
    body = json.dumps({"propagationPolicy": "Background", "gracePeriodSeconds": 0}).encode()

    def delete(name: str) -> None:
        status, data = cluster.raw("DELETE", f"/api/v1/namespaces/{name}", body=body)
        if status not in (200, 202, 404, 409):
            raise RunFailedError(f"cannot delete namespace {name}: HTTP {status} {data[:200]!r}")

    with ThreadPoolExecutor(max(concurrency, 1)) as pool:
        list(pool.map(delete, names))
    remaining: list[dict[str, Any]] = []
    deadline = t0 + timeout
    while True:
        remaining = run_namespaces(cluster, run_id=run_id)
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    stuck = {ns["metadata"]["name"]: _holders(ns) for ns in remaining}
    gone = [n for n in names if n not in stuck]
    return CleanupResult(deleted=gone, stuck=stuck, seconds=time.monotonic() - t0)


# -- burst latency ------------------------------------------------------------------------------

STAGES = ("created", "pod_created", "scheduled", "running", "ready")


@dataclass
class LatencyRow:
    session: str
    namespace: str
    created: float | None = None
    pod_created: float | None = None
    scheduled: float | None = None
    running: float | None = None
    ready: float | None = None
    waiting: str = ""

    def complete(self) -> bool:
        return self.ready is not None

    def as_row(self) -> dict[str, str]:
        out = {"session": self.session, "namespace": self.namespace}
        for stage in STAGES:
            value = getattr(self, stage)
            out[stage] = "" if value is None else f"{value:.3f}"
        out["waiting"] = "" if self.running is not None else self.waiting
        return out


def _parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def observe_pod(row: LatencyRow, pod: dict[str, Any], *, seen_at: float) -> None:
    """Advance `row`'s stages from one look at its runner pod.

    Stage times are when we first saw the stage, except that the apiserver's whole-second
    timestamps bound them from below when they are later (a poll can lag, a timestamp cannot
    lead). Each stage is at least the previous one, so a late poll never reorders them.
    """
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    containers = status.get("containerStatuses") or []

    def mark(stage: str, reached: bool) -> None:
        if reached and getattr(row, stage) is None:
            setattr(row, stage, seen_at)

    sched = conditions.get("PodScheduled") or {}
    if sched.get("status") == "False":
        row.waiting = f"{sched.get('reason') or 'Unschedulable'}: {sched.get('message') or ''}"
    else:
        reasons = [
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in containers
            if "waiting" in (c.get("state") or {})
        ]
        row.waiting = next((r for r in reasons if r), "Pending" if not containers else "")
    mark("pod_created", True)
    mark("scheduled", sched.get("status") == "True")
    mark("running", any("running" in (c.get("state") or {}) for c in containers))
    mark("ready", (conditions.get("Ready") or {}).get("status") == "True")
    previous = row.created
    for stage in STAGES[1:]:
        value = getattr(row, stage)
        if value is not None and previous is not None and value < previous:
            setattr(row, stage, previous)
        previous = getattr(row, stage) if value is not None else previous


def track_latency(
    cluster: Cluster,
    *,
    created: dict[tuple[str, str], float],
    timeout: float,
    poll: float = 0.25,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[LatencyRow]:
    """Poll the runner pods of `created` sessions until every one is Ready or `timeout`."""
    rows = {
        key: LatencyRow(session=key[1], namespace=key[0], created=when)
        for key, when in created.items()
    }
    namespaces = sorted({ns for ns, _ in created})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        for ns in namespaces:
            seen_at = time.time()
            doc = cluster.json(
                "GET",
                f"/api/v1/namespaces/{ns}/pods",
                params={"labelSelector": "app=ambient-code-runner"},
            )
            for pod in doc.get("items", []):
                session = (pod["metadata"].get("labels") or {}).get("agentic-session")
                row = rows.get((ns, session or ""))
                if row is not None:
                    observe_pod(row, pod, seen_at=seen_at)
        if all(r.complete() for r in rows.values()):
            break
        time.sleep(poll)
    return sorted(rows.values(), key=lambda r: (r.namespace, r.session))


def nearest_rank(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (the agent-sandbox stress tool's definition)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]
