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
    "SESSION_LABEL",
    "TOKEN_KEY",
    "TOKEN_REFRESHED_AT_ANNOTATION",
    "TRIGGER_NAME",
    "VERSION",
    "default_project_settings",
    "group_role_binding",
    "group_role_binding_name",
    "limit_range",
    "owner_reference",
    "pod_name",
    "runner_pod",
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

GROUP = "vteam.ambient-code"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MANAGED_LABEL = "ambient-code.io/managed"
RUNNER_APP_LABEL = "ambient-code-runner"
SESSION_LABEL = "agentic-session"
PROJECT_SETTINGS_NAME = "projectsettings"
PROJECT_ROLES = ("admin", "edit", "view")
TRIGGER_NAME = "ambient-session-trigger"
LIMIT_RANGE_NAME = "ambient-default-limits"
RUNNER_CONTAINER = "ambient-code-runner"
RUNNER_PORT = 8001
TOKEN_KEY = "k8s-token"  # noqa: S105 - a Secret key name, not a credential
TOKEN_REFRESHED_AT_ANNOTATION = "ambient-code.io/token-refreshed-at"  # noqa: S105
# Optional secrets the upstream runner reads its API keys and integration credentials from.
RUNNER_SECRETS = ("ambient-runner-secrets", "ambient-non-vertex-integrations")

Obj = dict[str, Any]


def pod_name(session: str) -> str:
    return f"{session}-runner"


def service_name(session: str) -> str:
    return f"session-{session}"


def service_account_name(session: str) -> str:
    return f"ambient-session-{session}"


def token_secret_name(session: str) -> str:
    return f"ambient-runner-token-{session}"


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


def _meta(name: str, namespace: str, owner: Obj, labels: dict[str, str]) -> Obj:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def _session_labels(session: str) -> dict[str, str]:
    return {"app": RUNNER_APP_LABEL, SESSION_LABEL: session}


def _session_child_meta(session: Obj, name_of: Callable[[str], str]) -> Obj:
    """Metadata of an object a session owns: named after it, in its namespace, labelled."""
    name = session["metadata"]["name"]
    return _meta(
        name_of(name),
        session["metadata"]["namespace"],
        owner_reference(session, kind="AgenticSession"),
        _session_labels(name),
    )


# -- per session ---------------------------------------------------------------------------


def runner_service_account(session: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _session_child_meta(session, service_account_name),
    }


def runner_token_secret(session: Obj, *, token: str, refreshed_at: str) -> Obj:
    meta = _session_child_meta(session, token_secret_name)
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
        "metadata": _session_child_meta(session, service_name),
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
        "INTERACTIVE": "true" if spec.get("interactive", True) else "false",
        "TIMEOUT": str(spec.get("timeout", 300)),
        "AUTO_PUSH_ON_COMPLETE": "true" if spec.get("autoPushOnComplete") else "false",
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
    env.append(
        {
            "name": "BOT_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": token_secret_name(meta["name"]),
                    "key": TOKEN_KEY,
                    "optional": True,
                }
            },
        }
    )
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
        "metadata": _session_child_meta(session, pod_name),
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account_name(name),
            # The runner authenticates with BOT_TOKEN; no second, auto-mounted credential.
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
                    "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}],
                }
            ],
            # Session state persists outside the pod (upstream moved to S3); scratch only.
            "volumes": [{"name": "workspace", "emptyDir": {}}],
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
