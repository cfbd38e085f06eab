"""The CRDs as the real v1.20 apiserver serves them: structural, defaulted, validated."""

from __future__ import annotations

import json

import pytest

from agentic_operator.contract import AGENTIC_SESSIONS, PROJECT_SETTINGS
from agentic_operator.kube import ApiError, KubeClient
from tests.conftest import kubectl, wait_until
from tests.operator.conftest import new_session

pytestmark = pytest.mark.cluster


def test_crds_are_structural_and_established(kube: KubeClient) -> None:
    for name in ("agenticsessions.vteam.ambient-code", "projectsettings.vteam.ambient-code"):
        crd = json.loads(kubectl("get", "crd", name, "-o", "json"))
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds.get("Established") == "True"
        assert "NonStructuralSchema" not in conds
        version = crd["spec"]["versions"][0]
        assert crd["spec"]["scope"] == "Namespaced"
        assert "status" in version["subresources"]
    ps = json.loads(kubectl("get", "crd", "projectsettings.vteam.ambient-code", "-o", "json"))
    assert ps["spec"]["names"]["shortNames"] == ["ps"]
    assert ps["spec"]["names"]["singular"] == "projectsetting"
    assert [c["name"] for c in ps["spec"]["versions"][0]["additionalPrinterColumns"]] == ["Age"]
    sessions = json.loads(kubectl("get", "crd", "agenticsessions.vteam.ambient-code", "-o", "json"))
    assert "additionalPrinterColumns" not in sessions["spec"]["versions"][0]


def test_session_defaults_are_applied(kube: KubeClient, namespace: str) -> None:
    obj = new_session(
        kube,
        namespace,
        "defaults",
        repos=[{"url": "https://example.com/r.git"}],
        llmSettings={"model": "m"},
        activeWorkflow={"gitUrl": "https://example.com/w.git"},
        mcpServers={"custom": {"srv": {"command": "x", "args": ["a"], "nested": {"k": 1}}}},
    )
    spec = obj["spec"]
    assert spec["timeout"] == 300
    assert spec["repos"][0] == {
        "url": "https://example.com/r.git",
        "branch": "main",
        "autoPush": False,
    }
    assert spec["llmSettings"] == {"model": "m", "temperature": 0.7, "maxTokens": 4000}
    # The model has upstream's default when the session names none.
    bare = new_session(kube, namespace, "nomodel", llmSettings={})
    assert bare["spec"]["llmSettings"]["model"] == "claude-sonnet-4-5"
    assert spec["activeWorkflow"]["branch"] == "main"
    # Unknown fields under mcpServers.custom are preserved, not pruned.
    assert spec["mcpServers"]["custom"]["srv"]["nested"] == {"k": 1}


def test_session_validation_rejects_bad_values(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(ApiError) as e:
        new_session(kube, namespace, "neg", inactivityTimeout=-1)
    assert e.value.status == 422
    with pytest.raises(ApiError) as e:
        new_session(kube, namespace, "norepo", repos=[{"branch": "main"}])
    assert e.value.status == 422
    obj = new_session(kube, namespace, "st")
    obj["status"] = {"phase": "Exploded"}
    with pytest.raises(ApiError) as e:
        kube.replace(AGENTIC_SESSIONS.path(namespace, "st", "status"), obj)
    assert e.value.status == 422 and "phase" in e.value.message
    obj = kube.get(AGENTIC_SESSIONS.path(namespace, "st"))
    obj["status"] = {"phase": "Stopped", "stoppedReason": "bored"}
    with pytest.raises(ApiError) as e:
        kube.replace(AGENTIC_SESSIONS.path(namespace, "st", "status"), obj)
    assert e.value.status == 422


def test_fields_removed_upstream_are_pruned(kube: KubeClient, namespace: str) -> None:
    obj = new_session(kube, namespace, "old", interactive=False, autoPushOnComplete=True)
    assert "interactive" not in obj["spec"] and "autoPushOnComplete" not in obj["spec"]
    assert obj["spec"]["initialPrompt"] == "test"


def test_mcp_servers_must_be_objects(kube: KubeClient, namespace: str) -> None:
    ok = new_session(
        kube,
        namespace,
        "mcp",
        mcpServers={"custom": {"srv": {"url": "http://x", "extra": {"k": 1}}}, "disabled": ["a"]},
    )
    assert ok["spec"]["mcpServers"]["custom"]["srv"]["extra"] == {"k": 1}
    with pytest.raises(ApiError) as e:
        new_session(kube, namespace, "mcpbad", mcpServers={"custom": {"srv": "not-an-object"}})
    assert e.value.status == 422


def test_reconciled_status_is_typed(kube: KubeClient, namespace: str) -> None:
    obj = new_session(kube, namespace, "rec")
    obj["status"] = {
        "reconciledRepos": [
            {
                "url": "https://example.com/r.git",
                "branches": ["main", "dev"],
                "currentActiveBranch": "dev",
                "defaultBranch": "main",
                "name": "r",
                "status": "Ready",
                "clonedAt": "2025-01-01T00:00:00Z",
            }
        ],
        "reconciledWorkflow": {"gitUrl": "https://example.com/w.git", "status": "Active"},
    }
    stored = kube.replace(AGENTIC_SESSIONS.path(namespace, "rec", "status"), obj)
    assert stored["status"]["reconciledRepos"][0]["branches"] == ["main", "dev"]
    for bad in (
        {"reconciledRepos": [{"url": "u", "status": "Exploded"}]},
        {"reconciledRepos": [{"url": "u", "clonedAt": "yesterday"}]},
        {"reconciledWorkflow": {"gitUrl": "u", "status": "Stale"}},
    ):
        again = kube.get(AGENTIC_SESSIONS.path(namespace, "rec"))
        again["status"] = bad
        with pytest.raises(ApiError) as e:
            kube.replace(AGENTIC_SESSIONS.path(namespace, "rec", "status"), again)
        assert e.value.status == 422, bad


def test_status_phase_defaults_to_pending(kube: KubeClient, namespace: str) -> None:
    obj = new_session(kube, namespace, "ph")
    obj["status"] = {"startTime": "2025-01-01T00:00:00Z"}
    stored = kube.replace(AGENTIC_SESSIONS.path(namespace, "ph", "status"), obj)
    assert stored["status"]["phase"] == "Pending"


def test_projectsettings_validation_and_defaults(kube: KubeClient, namespace: str) -> None:
    body = {
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "ProjectSettings",
        "metadata": {"name": "projectsettings", "namespace": namespace},
        "spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}]},
    }
    stored = kube.create(PROJECT_SETTINGS.path(namespace), body)
    assert stored["spec"]["inactivityTimeoutSeconds"] == 86400
    # The singleton: any other name is rejected by the schema (upstream: a CEL rule).
    other = json.loads(json.dumps(body))
    other["metadata"]["name"] = "other"
    with pytest.raises(ApiError) as e:
        kube.create(PROJECT_SETTINGS.path(namespace), other)
    assert e.value.status == 422 and "projectsettings" in e.value.message
    # The rest is checked on the one name that is allowed, in a namespace of its own.
    kube.delete(PROJECT_SETTINGS.path(namespace, "projectsettings"))
    wait_until(
        lambda: kube.get_or_none(PROJECT_SETTINGS.path(namespace, "projectsettings")) is None,
        timeout=30,
        what="settings deleted",
    )
    for spec in (
        {"groupAccess": [{"groupName": "devs", "role": "owner"}]},
        {},
        {"groupAccess": [], "repositories": [{"url": "u", "provider": "bitbucket"}]},
        {"groupAccess": [], "repositories": [{"branch": "main"}]},  # url is required
    ):
        bad = json.loads(json.dumps(body))
        bad["spec"] = spec
        with pytest.raises(ApiError) as e:
            kube.create(PROJECT_SETTINGS.path(namespace), bad)
        assert e.value.status == 422, spec
    stored = kube.create(PROJECT_SETTINGS.path(namespace), body)
    stored["status"] = {"groupBindingsCreated": -1}
    with pytest.raises(ApiError) as e:
        kube.replace(PROJECT_SETTINGS.path(namespace, "projectsettings", "status"), stored)
    assert e.value.status == 422


def test_short_names_and_printer_columns(kube: KubeClient, namespace: str) -> None:
    new_session(kube, namespace, "cols")
    out = kubectl("get", "as", "-n", namespace)
    assert out.split("\n")[0].split() == ["NAME", "AGE"]  # upstream has no printer columns
    kubectl("get", "ps", "-n", namespace)
