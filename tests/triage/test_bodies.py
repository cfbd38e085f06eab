"""triage.bodies: the objects a run creates look like production's."""

from __future__ import annotations

import json

import pytest

from triage import bodies

pytestmark = pytest.mark.unit


def test_session_bodies_look_like_production() -> None:
    body = bodies.session_body(namespace="ns", name="s", run_id="r", n=7)
    status = bodies.status_body("Completed")
    assert 4 * 1024 <= len(body) + len(status) <= 6 * 1024
    doc = json.loads(body)
    assert {"repos", "initialPrompt", "llmSettings", "userContext", "environmentVariables"} <= set(
        doc["spec"]
    )
    # Fields upstream removed from the CRD are not sent (its apiserver would prune them).
    assert not {"interactive", "autoPushOnComplete"} & set(doc["spec"])
    st = json.loads(status)["status"]
    assert st["phase"] == "Completed" and st["completionTime"]
    assert {c["type"] for c in st["conditions"]} >= {"Ready", "PodCreated", "Reconciled"}


def test_minimal_sessions_are_small_and_namespaces_carry_the_run() -> None:
    body = bodies.session_body(namespace="ns", name="s", run_id="r", n=7, shape="minimal")
    assert len(body) < 400
    ns = json.loads(bodies.namespace_body("oom-repro-ab12-0001", run_id="run-ab12", managed=True,
                                          extra={"team": "x"}))  # fmt: skip
    assert ns["metadata"]["labels"] == {
        "team": "x", bodies.RUN_ID_LABEL: "run-ab12", bodies.PART_OF_LABEL: "oom-reproducer",
        "ambient-code.io/managed": "true",
    }  # fmt: skip
    assert bodies.namespace_name("20990101-000000-x-ab12", 3) == "oom-repro-ab12-0003"
    assert bodies.namespace_name("20990101-000000-x-ab12", 3, "kopf-a") == "kopf-a-ab12-0003"
