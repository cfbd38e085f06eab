"""The CRDs as the real v1.20 apiserver serves them: structural, defaulted, validated."""

from __future__ import annotations

import json

import pytest

from agentic_operator._kube import ApiError, KubeClient
from tests.conftest import kubectl
from tests.operator.conftest import new_session, sessions_path, settings_path

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
        assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    ps = json.loads(kubectl("get", "crd", "projectsettings.vteam.ambient-code", "-o", "json"))
    assert ps["spec"]["names"]["shortNames"] == ["ps"]


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
    assert spec["interactive"] is True
    assert spec["timeout"] == 300
    assert spec["repos"][0] == {
        "url": "https://example.com/r.git",
        "branch": "main",
        "autoPush": False,
    }
    assert spec["llmSettings"] == {"model": "m", "temperature": 0.7, "maxTokens": 4000}
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
        kube.replace(sessions_path(namespace, "st", "status"), obj)
    assert e.value.status == 422 and "phase" in e.value.message
    obj = kube.get(sessions_path(namespace, "st"))
    obj["status"] = {"phase": "Stopped", "stoppedReason": "bored"}
    with pytest.raises(ApiError) as e:
        kube.replace(sessions_path(namespace, "st", "status"), obj)
    assert e.value.status == 422


def test_status_phase_defaults_to_pending(kube: KubeClient, namespace: str) -> None:
    obj = new_session(kube, namespace, "ph")
    obj["status"] = {"startTime": "2025-01-01T00:00:00Z"}
    stored = kube.replace(sessions_path(namespace, "ph", "status"), obj)
    assert stored["status"]["phase"] == "Pending"


def test_projectsettings_validation_and_defaults(kube: KubeClient, namespace: str) -> None:
    body = {
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "ProjectSettings",
        "metadata": {"name": "projectsettings", "namespace": namespace},
        "spec": {"groupAccess": [{"groupName": "devs", "role": "edit"}]},
    }
    stored = kube.create(settings_path(namespace), body)
    assert stored["spec"]["inactivityTimeoutSeconds"] == 86400
    bad = json.loads(json.dumps(body))
    bad["metadata"]["name"] = "other"
    bad["spec"]["groupAccess"][0]["role"] = "owner"
    with pytest.raises(ApiError) as e:
        kube.create(settings_path(namespace), bad)
    assert e.value.status == 422
    missing = json.loads(json.dumps(body))
    missing["metadata"]["name"] = "other2"
    missing["spec"] = {}
    with pytest.raises(ApiError) as e:
        kube.create(settings_path(namespace), missing)
    assert e.value.status == 422
    provider = json.loads(json.dumps(body))
    provider["metadata"]["name"] = "other3"
    provider["spec"]["repositories"] = [{"url": "u", "provider": "bitbucket"}]
    with pytest.raises(ApiError) as e:
        kube.create(settings_path(namespace), provider)
    assert e.value.status == 422


def test_short_names_and_printer_columns(kube: KubeClient, namespace: str) -> None:
    new_session(kube, namespace, "cols")
    out = kubectl("get", "as", "-n", namespace)
    assert out.split("\n")[0].split() == ["NAME", "PHASE", "AGE"]
    kubectl("get", "ps", "-n", namespace)
