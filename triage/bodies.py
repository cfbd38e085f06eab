"""The objects a run creates, as prebuilt JSON: namespaces, sessions, their status, pods.

Bodies are bytes built once per object with `separators=(",", ":")`: the loader sends
hundreds a second and the apiserver, not the client, must be what bounds the rate. A
production-shaped session is ~5.8 KB of JSON with its status (the size upstream measured on
its cluster: 4,319 sessions, ~25 MB); a minimal one is what a shell script makes. Sending
both separates the operator's cost per object from its cost per byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from agentic_operator.contract import (
    API_VERSION,
    MANAGED_LABEL,
    RUNNER_APP_LABEL,
    RUNNER_SECRETS_NAME,
    SESSION_LABEL,
)

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_VALUE = "oom-reproducer"
RUN_ID_LABEL = "triage.ambient-code.io/run-id"
RUNNER_IMAGE = "localhost/ambient-runner:dev"
#: A scheduler name nobody serves: the pod exists, is cached and listed, and never runs.
PARKED_SCHEDULER = "triage-parked"

#: What a session looks like: "production" (~5.8 KB with its status, the size upstream
#: measured on its cluster) or "minimal" (a few hundred bytes and a bare phase, what a shell
#: script creates). Running both separates per-object overhead from per-byte cost.
SessionShape = Literal["production", "minimal"]
SESSION_SHAPES: tuple[SessionShape, ...] = get_args(SessionShape)


#: The upstream script's namespace prefix; a scenario can set its own (`namespace_prefix`).
NAMESPACE_PREFIX = "oom-repro"


def namespace_name(run_id: str, index: int, prefix: str = NAMESPACE_PREFIX) -> str:
    """`<prefix>-<run suffix>-NNNN` (`oom-repro-...` like the upstream script's), unique per
    run: a new run never collides with the last run's namespaces that are still terminating.
    The prefix is there for operators scoped by namespace name (kopf's `--namespace` globs):
    give the run a prefix that matches the operator's glob and nothing else does."""
    return f"{prefix}-{run_id.rsplit('-', 1)[-1]}-{index:04d}"


def session_name(ns_index: int, j: int) -> str:
    return f"session-{ns_index:04d}-{j:03d}"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_labels(run_id: str) -> dict[str, str]:
    return {RUN_ID_LABEL: run_id, PART_OF_LABEL: PART_OF_VALUE}


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
    labels = run_labels(run_id)
    if shape == "minimal":
        minimal = {
            "apiVersion": API_VERSION,
            "kind": "AgenticSession",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"displayName": f"oom-repro {n}", "initialPrompt": f"Test session {n}"},
        }
        return json.dumps(minimal, separators=(",", ":")).encode()
    repo = f"https://github.com/ambient-code/platform-{n % 17:02d}"
    body = {
        "apiVersion": API_VERSION,
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
            "timeout": 3600,
            "inactivityTimeout": 86400,
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


def namespace_body(
    name: str, *, run_id: str, managed: bool, extra: dict[str, str] | None = None
) -> bytes:
    labels = {**(extra or {}), **run_labels(run_id)}
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
        "labels": {**run_labels(run_id), **(labels or {})},
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


def runner_secrets_body(namespace: str, *, run_id: str) -> bytes:
    """The prerequisite Secret a namespace needs before the operator starts runners there.

    Upstream's sessions wait for it (SecretsReady=False, RunnerSecretMissing): scenarios whose
    runners must start (running-sessions, burst) create it with the namespace.
    """
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": RUNNER_SECRETS_NAME,
                "namespace": namespace,
                "labels": run_labels(run_id),
            },
            "type": "Opaque",
            "stringData": {"ANTHROPIC_API_KEY": "not-a-real-key"},
        },
        separators=(",", ":"),
    ).encode()


def runner_labels(session: str) -> dict[str, str]:
    return {"app": RUNNER_APP_LABEL, SESSION_LABEL: session}
