"""The AgenticSession / ProjectSettings API contract, in one module.

Group and version, resource types, labels, annotations, phases, condition types and the
names of the objects a session owns are what users, dashboards and other tools rely on (the
runner pod `<session>-runner`, label `app=ambient-code-runner`, the managed-namespace label
...). The operator builds objects from them, triage creates load and finds runners with
them, the benchmarks and tests assert on them: each is spelled here once, so a rename is one
change that every side sees. Public and dependency-free, like `oomcount`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agentic_operator.resources import Resource

__all__ = [
    "AGENTIC_SESSIONS",
    "API_VERSION",
    "CONDITION_TYPES",
    "CREATED_BY_USER_ANNOTATION",
    "DESIRED_PHASE_ANNOTATION",
    "FATAL_WAITING_REASONS",
    "GROUP",
    "MANAGED_LABEL",
    "MANAGED_SELECTOR",
    "PHASES",
    "PREREQUISITE_EXIT_CODE",
    "PROJECT_SETTINGS",
    "PROJECT_SETTINGS_NAME",
    "REASON_PREREQUISITE_FAILED",
    "REASON_RUNNER_SECRET_MISSING",
    "RUNNER_APP_LABEL",
    "RUNNER_SA_ANNOTATION",
    "RUNNER_SECRETS_NAME",
    "RUNNER_SERVICE_ACCOUNT_APP_LABEL",
    "RUNNER_TOKEN_DIR",
    "RUNNER_TOKEN_FILE",
    "RUNNER_TOKEN_SECRET_ANNOTATION",
    "RUNNER_TOKEN_SECRET_APP_LABEL",
    "SERVICE_APP_LABEL",
    "SESSION_LABEL",
    "STOP_REASON_ANNOTATION",
    "TERMINAL_PHASES",
    "TRANSIENT_CONFIG_ERROR",
    "TRANSIENT_CONFIG_GRACE",
    "VERSION",
    "pod_name",
    "role_binding_name",
    "role_name",
    "service_account_name",
    "service_name",
    "token_secret_name",
]

GROUP = "vteam.ambient-code"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

AGENTIC_SESSIONS = Resource(GROUP, VERSION, "agenticsessions", "AgenticSession")
PROJECT_SETTINGS = Resource(GROUP, VERSION, "projectsettings", "ProjectSettings")

#: A namespace with this label set to "true" is a project the operator manages.
MANAGED_LABEL = "ambient-code.io/managed"
MANAGED_SELECTOR = f"{MANAGED_LABEL}=true"
#: ProjectSettings is a singleton per namespace under this name.
PROJECT_SETTINGS_NAME = "projectsettings"

#: Runner pods carry `app=<this>` and `<SESSION_LABEL>=<session name>`. (The upstream pod-cache
#: filter used app=ambient-runner and so cached none of them.)
RUNNER_APP_LABEL = "ambient-code-runner"
SESSION_LABEL = "agentic-session"

#: `Running` on a terminal session restarts it; `Stopped` on a live one stops it.
DESIRED_PHASE_ANNOTATION = "ambient-code.io/desired-phase"
STOP_REASON_ANNOTATION = "ambient-code.io/stop-reason"

#: `app` label values of the other per-session objects, as upstream sets them.
RUNNER_SERVICE_ACCOUNT_APP_LABEL = "ambient-runner"
RUNNER_TOKEN_SECRET_APP_LABEL = "ambient-runner-token"  # noqa: S105 - a label, not a secret
SERVICE_APP_LABEL = "ambient-code"

#: The session names its runner token Secret and ServiceAccount in these annotations.
RUNNER_TOKEN_SECRET_ANNOTATION = "ambient-code.io/runner-token-secret"  # noqa: S105
RUNNER_SA_ANNOTATION = "ambient-code.io/runner-sa"
#: The runner ServiceAccount carries the creating user's id (spec.userContext.userId).
CREATED_BY_USER_ANNOTATION = "ambient-code.io/created-by-user-id"

#: The runner reads its token from this file (the token Secret's `k8s-token` key), so a
#: refresh of the Secret reaches a runner that is already running.
RUNNER_TOKEN_DIR = "/var/run/secrets/ambient"  # noqa: S105 - a path
RUNNER_TOKEN_FILE = f"{RUNNER_TOKEN_DIR}/bot-token"

#: The prerequisite Secret a session's namespace must hold (unless Vertex is used).
RUNNER_SECRETS_NAME = "ambient-runner-secrets"
#: Condition reasons users see on the session.
REASON_RUNNER_SECRET_MISSING = "RunnerSecretMissing"  # noqa: S105 - a reason
REASON_PREREQUISITE_FAILED = "PrerequisiteFailed"
#: A runner that exits with this code failed a prerequisite check (bad credentials ...).
PREREQUISITE_EXIT_CODE = 2
#: A runner container waiting for one of these reasons will not start without a change:
#: the session fails and its pod and Service are removed, as upstream does.
FATAL_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "InvalidImageName",
    }
)
#: The kubelet's message when it could not read a Secret or ConfigMap from its own cache in
#: time (it allows one second), as in "failed to sync secret cache: timed out waiting for the
#: condition": a busy apiserver, or the Node authorizer refusing the read while its graph has
#: not yet caught up with a freshly bound pod. It says nothing about the pod's configuration,
#: and the kubelet tries again on its next sync. So a CreateContainerConfigError with this
#: message is reported and waited for, up to TRANSIENT_CONFIG_GRACE after the pod was made;
#: any other message (a required Secret or key that does not exist) fails the session at
#: once, as upstream does with every CreateContainerConfigError (which fails sessions that
#: would have started a few seconds later).
TRANSIENT_CONFIG_ERROR = re.compile(r"^failed to sync \S+ cache\b")
#: Seconds after the runner pod was made past which that message is no longer waited for: a
#: kubelet that still cannot read the Secret is broken, not slow (the image pull comes before
#: the read, so the grace leaves room for a slow pull too).
TRANSIENT_CONFIG_GRACE = 300.0

PHASES = ("Pending", "Creating", "Running", "Stopping", "Stopped", "Completed", "Failed")
TERMINAL_PHASES = frozenset({"Stopped", "Completed", "Failed"})
CONDITION_TYPES = (
    "Ready",
    "SecretsReady",
    "PodCreated",
    "PodScheduled",
    "RunnerStarted",
    "ReposReconciled",
    "WorkflowReconciled",
    "Reconciled",
)


def _owned(pattern: str) -> Callable[[str], str]:
    """The name of one kind of object a session owns, from the session's name."""

    def name(session: str) -> str:
        return pattern.format(session=session)

    return name


# Upstream's names for what a session owns: runners, dashboards and cleanup find them by these.
pod_name = _owned("{session}-runner")
service_name = _owned("session-{session}")
service_account_name = _owned("ambient-session-{session}")
token_secret_name = _owned("ambient-runner-token-{session}")
role_name = _owned("ambient-session-{session}-role")
role_binding_name = _owned("ambient-session-{session}-rb")
