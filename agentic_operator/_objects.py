"""Manifests of everything the operator creates, as plain JSON dicts.

Names, labels and owner references are the contract users and other tools rely on (the
runner pod `<session>-runner`, label `app=ambient-code-runner`, RoleBinding
`<group>-<role>` ...), so they are built in one place, deterministically: a second worker
building the same object gets the same name and the apiserver's AlreadyExists turns a race
into a no-op instead of a duplicate.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from agentic_operator.contract import (
    AGENTIC_SESSIONS,
    API_VERSION,
    CREATED_BY_USER_ANNOTATION,
    GROUP,
    MANAGED_LABEL,
    PROJECT_SETTINGS_NAME,
    RUNNER_APP_LABEL,
    RUNNER_SECRETS_NAME,
    RUNNER_SERVICE_ACCOUNT_APP_LABEL,
    RUNNER_TOKEN_DIR,
    RUNNER_TOKEN_FILE,
    RUNNER_TOKEN_SECRET_APP_LABEL,
    SERVICE_APP_LABEL,
    SESSION_LABEL,
    VERSION,
    pod_name,
    role_binding_name,
    role_name,
    service_account_name,
    service_name,
    token_secret_name,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "LIMIT_RANGE_NAME",
    "MANAGED_LABEL",
    "PROJECT_ROLES",
    "PROJECT_SETTINGS_NAME",
    "RUNNER_APP_LABEL",
    "RUNNER_CONTAINER",
    "RUNNER_PORT",
    "RUNNER_SECRETS",
    "SESSION_LABEL",
    "TOKEN_KEY",
    "TOKEN_REFRESHED_AT_ANNOTATION",
    "TRIGGER_NAME",
    "VERSION",
    "created_by_user",
    "default_project_settings",
    "group_role_binding",
    "group_role_binding_name",
    "limit_range",
    "owner_reference",
    "pod_name",
    "runner_pod",
    "runner_role",
    "runner_role_binding",
    "runner_service",
    "runner_service_account",
    "runner_token_secret",
    "service_account_name",
    "service_name",
    "token_secret_name",
    "trigger_role",
    "trigger_role_binding",
    "trigger_service_account",
]

PROJECT_ROLES = ("admin", "edit", "view")
TRIGGER_NAME = "ambient-session-trigger"
LIMIT_RANGE_NAME = "ambient-default-limits"
RUNNER_CONTAINER = "ambient-code-runner"
RUNNER_PORT = 8001
TOKEN_KEY = "k8s-token"  # noqa: S105 - a Secret key name, not a credential
TOKEN_REFRESHED_AT_ANNOTATION = "ambient-code.io/token-refreshed-at"  # noqa: S105
# Secrets the upstream runner reads its API keys and integration credentials from. The
# first is the prerequisite a Pending session waits for (unless Vertex is used); both are
# optional in the pod so a Vertex deployment, which has neither, can start runners.
RUNNER_SECRETS = (RUNNER_SECRETS_NAME, "ambient-non-vertex-integrations")
TOKEN_VOLUME = "runner-token"  # noqa: S105 - a volume name

Obj = dict[str, Any]


def group_role_binding_name(group: str, role: str) -> str:
    # RoleBinding names are path segments: '/' and '%' are the only characters they forbid.
    safe = group.replace("/", "-").replace("%", "-")
    return f"{safe}-{role}"


def owner_reference(obj: Obj, *, kind: str) -> Obj:
    meta = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def _meta(name: str, namespace: str, owner: Obj, labels: dict[str, str] | None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "ownerReferences": [owner]}
    if labels:
        meta["labels"] = labels
    return meta


def _session_labels(session: str) -> dict[str, str]:
    return {"app": RUNNER_APP_LABEL, SESSION_LABEL: session}


def _session_child_meta(
    session: Obj, name_of: Callable[[str], str], labels: dict[str, str] | None
) -> Obj:
    """Metadata of an object a session owns: named after it, in its namespace, owned by it."""
    return _meta(
        name_of(session["metadata"]["name"]),
        session["metadata"]["namespace"],
        owner_reference(session, kind=AGENTIC_SESSIONS.kind),
        labels,
    )


# -- per session ---------------------------------------------------------------------------


def created_by_user(session: Obj) -> dict[str, str]:
    """The annotation naming the creating user, or nothing when the session names none."""
    user = str(((session.get("spec") or {}).get("userContext") or {}).get("userId") or "").strip()
    return {CREATED_BY_USER_ANNOTATION: user} if user else {}


def runner_service_account(session: Obj) -> Obj:
    meta = _session_child_meta(
        session, service_account_name, {"app": RUNNER_SERVICE_ACCOUNT_APP_LABEL}
    )
    annotations = created_by_user(session)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def runner_role(session: Obj) -> Obj:
    """Least privilege for the runner's token: its sessions, access reviews, reading secrets."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _session_child_meta(session, role_name, None),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [AGENTIC_SESSIONS.plural],
                "verbs": ["get", "list", "watch", "create", "update", "patch"],
            },
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews"],
                "verbs": ["create"],
            },
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }


def runner_role_binding(session: Obj) -> Obj:
    name = session["metadata"]["name"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _session_child_meta(session, role_binding_name, None),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role_name(name),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": service_account_name(name),
                "namespace": session["metadata"]["namespace"],
            }
        ],
    }


def runner_token_secret(session: Obj, *, token: str, refreshed_at: str) -> Obj:
    meta = _session_child_meta(session, token_secret_name, {"app": RUNNER_TOKEN_SECRET_APP_LABEL})
    meta["annotations"] = {TOKEN_REFRESHED_AT_ANNOTATION: refreshed_at}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode("ascii")},
    }


def runner_service(session: Obj) -> Obj:
    name = session["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _session_child_meta(
            session, service_name, {"app": SERVICE_APP_LABEL, SESSION_LABEL: name}
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": _session_labels(name),
            "ports": [
                {"name": "agui", "port": RUNNER_PORT, "targetPort": "agui", "protocol": "TCP"}
            ],
        },
    }


def _runner_env(session: Obj) -> list[Obj]:
    meta = session["metadata"]
    spec = session.get("spec") or {}
    llm = spec.get("llmSettings") or {}
    user = spec.get("userContext") or {}
    fixed: dict[str, str] = {
        "AGENTIC_SESSION_NAME": meta["name"],
        "AGENTIC_SESSION_NAMESPACE": meta["namespace"],
        "SESSION_ID": meta["name"],
        "TIMEOUT": str(spec.get("timeout", 300)),
        "AGUI_PORT": str(RUNNER_PORT),
    }
    if llm.get("model"):
        fixed["LLM_MODEL"] = str(llm["model"])
    if llm.get("temperature") is not None:
        fixed["LLM_TEMPERATURE"] = str(llm["temperature"])
    if llm.get("maxTokens") is not None:
        fixed["LLM_MAX_TOKENS"] = str(llm["maxTokens"])
    if spec.get("initialPrompt"):
        fixed["INITIAL_PROMPT"] = str(spec["initialPrompt"])
    if user.get("userId"):
        fixed["USER_ID"] = str(user["userId"])
    if user.get("displayName"):
        fixed["USER_NAME"] = str(user["displayName"])
    env: list[Obj] = [{"name": k, "value": v} for k, v in fixed.items()]
    user_env = spec.get("environmentVariables") or {}
    # User variables come last so they override ours, as upstream's merge does.
    taken = {e["name"] for e in env}
    for k in sorted(user_env):
        item = {"name": str(k), "value": str(user_env[k])}
        if k in taken:
            env = [e for e in env if e["name"] != k]
        env.append(item)
    return env


def runner_pod(session: Obj, *, image: str) -> Obj:
    name = session["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _session_child_meta(session, pod_name, _session_labels(name)),
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account_name(name),
            # The runner authenticates with its token file; no second, auto-mounted credential.
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": RUNNER_CONTAINER,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "agui", "containerPort": RUNNER_PORT, "protocol": "TCP"}],
                    "env": _runner_env(session),
                    "envFrom": [
                        {"secretRef": {"name": s, "optional": True}} for s in RUNNER_SECRETS
                    ],
                    "volumeMounts": [
                        {"name": "workspace", "mountPath": "/workspace"},
                        # A directory mount (never subPath): the kubelet swaps the files in
                        # place when the Secret changes, so a token refresh reaches the
                        # running runner; an environment variable would stay as it was.
                        {"name": TOKEN_VOLUME, "mountPath": RUNNER_TOKEN_DIR, "readOnly": True},
                    ],
                }
            ],
            # Session state persists outside the pod (upstream moved to S3); scratch only.
            "volumes": [
                {"name": "workspace", "emptyDir": {}},
                {
                    "name": TOKEN_VOLUME,
                    "secret": {
                        "secretName": token_secret_name(name),
                        "items": [{"key": TOKEN_KEY, "path": RUNNER_TOKEN_FILE.rsplit("/", 1)[1]}],
                    },
                },
            ],
        },
    }


# -- per project (namespace) ---------------------------------------------------------------


def default_project_settings(namespace: str) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "ProjectSettings",
        "metadata": {
            "name": PROJECT_SETTINGS_NAME,
            "namespace": namespace,
            "labels": {MANAGED_LABEL: "true"},
        },
        "spec": {"groupAccess": []},
    }


def _ps_meta(ps: Obj, name: str) -> Obj:
    return _meta(
        name,
        ps["metadata"]["namespace"],
        owner_reference(ps, kind="ProjectSettings"),
        {MANAGED_LABEL: "true"},
    )


def group_role_binding(ps: Obj, *, group: str, role: str) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _ps_meta(ps, group_role_binding_name(group, role)),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"ambient-project-{role}",
        },
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}],
    }


def trigger_service_account(ps: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _ps_meta(ps, TRIGGER_NAME)}


def trigger_role(ps: Obj) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _ps_meta(ps, TRIGGER_NAME),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": ["agenticsessions"],
                "verbs": ["create", "get", "list", "update"],
            }
        ],
    }


def trigger_role_binding(ps: Obj) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _ps_meta(ps, TRIGGER_NAME),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": TRIGGER_NAME,
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": TRIGGER_NAME,
                "namespace": ps["metadata"]["namespace"],
            }
        ],
    }


def limit_range(ps: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _ps_meta(ps, LIMIT_RANGE_NAME),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                    "default": {"cpu": "2", "memory": "4Gi"},
                }
            ]
        },
    }
