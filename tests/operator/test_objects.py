"""Manifests of everything the operator creates (`_objects`): names, labels, owners, rules."""

from __future__ import annotations

import pytest

from agentic_operator import _objects as objs
from agentic_operator.contract import RUNNER_TOKEN_FILE

pytestmark = pytest.mark.unit


def _session() -> dict[str, object]:
    return {
        "metadata": {"name": "s1", "namespace": "p", "uid": "u-1"},
        "spec": {
            "initialPrompt": "hi",
            "llmSettings": {"model": "m", "temperature": 0.7, "maxTokens": 4000},
            "environmentVariables": {"RUNNER_EXIT_CODE": "3", "TIMEOUT": "9"},
            "userContext": {"userId": "u-42", "displayName": "Dev"},
        },
    }


def test_runner_pod_manifest() -> None:
    pod = objs.runner_pod(_session(), image="img:1")
    assert pod["metadata"]["name"] == "s1-runner"
    assert pod["metadata"]["labels"] == {"app": "ambient-code-runner", "agentic-session": "s1"}
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("AgenticSession", "u-1", True)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "ambient-session-s1"
    c = spec["containers"][0]
    assert (c["image"], c["imagePullPolicy"]) == ("img:1", "IfNotPresent")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RUNNER_EXIT_CODE"] == "3" and env["TIMEOUT"] == "9"  # user values override ours
    assert [e["name"] for e in c["env"]].count("TIMEOUT") == 1
    assert env["LLM_MODEL"] == "m" and env["INITIAL_PROMPT"] == "hi"
    # The token is a mounted file, never an env var (that would be frozen at pod start).
    assert "BOT_TOKEN" not in env
    assert not any("valueFrom" in e for e in c["env"])
    assert not {"INTERACTIVE", "AUTO_PUSH_ON_COMPLETE"} & set(env)  # removed upstream
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/var/run/secrets/ambient")
    assert mount["readOnly"] is True and "subPath" not in mount
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ambient-runner-token-s1"
    assert volume["secret"]["items"] == [{"key": "k8s-token", "path": "bot-token"}]
    assert RUNNER_TOKEN_FILE == "/var/run/secrets/ambient/bot-token"
    assert next(r["secretRef"]["name"] for r in c["envFrom"]) == "ambient-runner-secrets"


def test_session_side_objects() -> None:
    s = _session()
    svc = objs.runner_service(s)
    assert svc["metadata"]["name"] == "session-s1"
    assert svc["metadata"]["labels"]["app"] == "ambient-code"
    assert svc["spec"]["selector"] == {"app": "ambient-code-runner", "agentic-session": "s1"}
    assert svc["spec"]["ports"][0]["name"] == "agui"
    sa = objs.runner_service_account(s)
    assert sa["metadata"]["name"] == "ambient-session-s1"
    assert sa["metadata"]["labels"] == {"app": "ambient-runner"}
    assert sa["metadata"]["annotations"] == {"ambient-code.io/created-by-user-id": "u-42"}
    role = objs.runner_role(s)
    assert role["metadata"]["name"] == "ambient-session-s1-role"
    assert role["rules"] == [
        {
            "apiGroups": ["vteam.ambient-code"],
            "resources": ["agenticsessions"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews"],
            "verbs": ["create"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]
    rb = objs.runner_role_binding(s)
    assert rb["metadata"]["name"] == "ambient-session-s1-rb"
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "ambient-session-s1-role",
    }
    assert rb["subjects"] == [
        {"kind": "ServiceAccount", "name": "ambient-session-s1", "namespace": "p"}
    ]
    for obj in (svc, sa, role, rb):
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("AgenticSession", "u-1", True)
    # No user named: no annotation.
    anonymous = {"metadata": s["metadata"], "spec": {}}
    assert "annotations" not in objs.runner_service_account(anonymous)["metadata"]
    secret = objs.runner_token_secret(s, token="t", refreshed_at="2025-01-01T00:00:00Z")
    assert secret["metadata"]["labels"] == {"app": "ambient-runner-token"}
    assert secret["metadata"]["name"] == "ambient-runner-token-s1"
    assert secret["data"] == {"k8s-token": "dA=="}
    assert secret["metadata"]["annotations"] == {
        "ambient-code.io/token-refreshed-at": "2025-01-01T00:00:00Z"
    }


def test_project_objects() -> None:
    ps = {"metadata": {"name": "projectsettings", "namespace": "p", "uid": "u-ps"}}
    rb = objs.group_role_binding(ps, group="team/a", role="view")
    assert rb["metadata"]["name"] == "team-a-view"
    assert rb["roleRef"]["name"] == "ambient-project-view"
    for obj in (
        rb,
        objs.trigger_role(ps),
        objs.trigger_role_binding(ps),
        objs.trigger_service_account(ps),
        objs.limit_range(ps),
    ):
        assert obj["metadata"]["labels"] == {"ambient-code.io/managed": "true"}
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "ProjectSettings"
    assert objs.default_project_settings("p")["spec"] == {"groupAccess": []}
